"""xlrec-nextitnet: NextItNet (Yuan et al., WSDM 2019) as an xlrec model plugin.

xlrec finds the model through the entry point `nextitnet` in the group `xlrec.models`
(pyproject.toml); importing this package imports torch and xlrec.
"""

from xlrec_nextitnet.model import NextItNet, NextItNetSettings

__all__ = ["NextItNet", "NextItNetSettings"]
__version__ = "0.1.0"
