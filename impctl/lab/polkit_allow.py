"""python-dbusmock template: a polkit authority that authorizes every action.

ModemManager asks polkit before Enable, and before `mmcli --report-kernel-event`
(the lab's way to replug the simulated modem); the lab's bus has one user, root.
Run by the lab as `python -m dbusmock --system --template <this file>`.
"""

from dbusmock.templates.polkitd import *  # noqa: F403 - the template's methods and names
from dbusmock.templates.polkitd import load as _load_polkitd


def load(mock, parameters):  # type: ignore[no-untyped-def]
    _load_polkitd(mock, parameters)
    mock.allow_unknown = True
