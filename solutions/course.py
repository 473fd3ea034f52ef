"""The document course: the six reference networks of the five tutorial documents.

Each assignment is one of :mod:`gradcheck.networks` (architecture, worked example, hidden
random examples); the reference solutions are the files beside this one.
"""

from gradcheck.assignments import Network
from gradcheck.networks import NAMES

TITLE = "The five documents"
ASSIGNMENTS = tuple(Network.document(name) for name in NAMES)
