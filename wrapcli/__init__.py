"""wrapcli: is a capability removed by fine-tuning really gone, or only wrapped?"""

__version__ = "0.1.0"
