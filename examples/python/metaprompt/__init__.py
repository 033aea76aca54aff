"""Python bindings (ctypes + numpy) for libmetaprompt.

    import metaprompt as mp
    with mp.Config({mp.CFG_SEED: 1}) as cfg: ...

The shared library is found by, in order: $MP_LIBRARY_PATH (a file), the
repository's lib/libmetaprompt.so.<major> next to this package, the system
loader (libmetaprompt.so.<major>, LD_LIBRARY_PATH), ctypes.util.find_library,
then `pkg-config --variable=libdir metaprompt`.

Every failing call raises MetapromptError (.status, .status_name, .message).
Handles free their C object on close(), at the end of a `with` block, or when
garbage-collected; a handle keeps the handles it borrows alive.
"""
from metaprompt._lib import LibraryNotFound, ABI_MAJOR
from metaprompt._base import *  # noqa: F401,F403  status codes
from metaprompt._base import MetapromptError, Handle, STATUS_NAMES
from metaprompt.core import *  # noqa: F401,F403
from metaprompt.core import Config
from metaprompt.tape import *  # noqa: F401,F403
from metaprompt.tape import Tape
from metaprompt.model import *  # noqa: F401,F403
from metaprompt.model import Model, Prompt, checkpoint_save, checkpoint_load
from metaprompt.data import *  # noqa: F401,F403
from metaprompt.data import Dataset, Task, Sampler
from metaprompt.meta import *  # noqa: F401,F403
from metaprompt.meta import Meta

__version__ = version_string()  # noqa: F405  the loaded library's version
