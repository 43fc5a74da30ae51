"""Hot tensor contractions of deepks-es (installed as ``deepks_es.kernels``).

Every kernel has a plain reference twin named ``<kernel>_reference``; tests/test_kernels.py checks each
pair in float64 to 1e-10.
"""

from .projection import (
    ao_owner,
    make_de_delta,
    make_de_delta_reference,
    make_pdm,
    make_pdm_reference,
    make_v_delta,
    make_v_delta_reference,
)

__all__ = [
    "ao_owner",
    "make_pdm",
    "make_pdm_reference",
    "make_v_delta",
    "make_v_delta_reference",
    "make_de_delta",
    "make_de_delta_reference",
]
