"""trainspeed: which technique makes your network reach its target accuracy fastest?"""

__version__ = "0.1.0"
