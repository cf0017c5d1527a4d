"""The aios registration of aios-audio.

It declares the contract version and registers nothing yet: its components arrive with their
own issues, and registering placeholders would let a config select something that cannot run.
"""

AIOS_CONTRACT_VERSION = "1.3"
