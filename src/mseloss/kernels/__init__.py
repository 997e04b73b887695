"""Kernel backends, one module each; imported lazily by :mod:`mseloss._backend`.

Each module offers the same functions on plain tensors of one dtype and one dense layout:
``sse_forward(x, y, scale, grad)``, ``squared_error(x, y, out)``,
``mse_backward(x, y, upstream, scale, grad)`` and ``upstream_is_one(upstream)``, and the flag
``PRECOMPUTE_GRAD`` saying whether the reduced forward should write the gradient too.
"""
