from contract import __version__ as __version__
