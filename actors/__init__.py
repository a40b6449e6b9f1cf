"""The actor programming model: what a script author subclasses, holds and catches.

Import from here: ``from actors import Actor, ActorRef``. The machinery that runs actors
lives in ``runtime``; this package never imports it.
"""

from __future__ import annotations

from ._actor import Actor as Actor
from ._context import ActorContext as ActorContext
from ._errors import ActorDeadError as ActorDeadError
from ._errors import ActorNameTakenError as ActorNameTakenError
from ._errors import ActorNotFoundError as ActorNotFoundError
from ._errors import ActorsError as ActorsError
from ._errors import ActorStartError as ActorStartError
from ._errors import AskTimeoutError as AskTimeoutError
from ._errors import InvalidSharedArrayError as InvalidSharedArrayError
from ._errors import InvalidSpawnError as InvalidSpawnError
from ._errors import LockOwnerDiedError as LockOwnerDiedError
from ._errors import LockTimeoutError as LockTimeoutError
from ._errors import MailboxFullError as MailboxFullError
from ._errors import MessageNotSerializableError as MessageNotSerializableError
from ._errors import MessageTooLargeError as MessageTooLargeError
from ._errors import RemoteActorError as RemoteActorError
from ._errors import RuntimeClosedError as RuntimeClosedError
from ._errors import SharedMemoryFullError as SharedMemoryFullError
from ._errors import StaleHandleError as StaleHandleError
from ._ref import ActorRef as ActorRef
from ._reply import Reply as Reply
from ._shared import Permit as Permit
from ._shared import SharedArray as SharedArray
from ._shared import SharedMemoryService as SharedMemoryService
from ._shared import SharedSemaphore as SharedSemaphore

__all__ = [
    "Actor",
    "ActorContext",
    "ActorDeadError",
    "ActorNameTakenError",
    "ActorNotFoundError",
    "ActorRef",
    "ActorStartError",
    "ActorsError",
    "AskTimeoutError",
    "InvalidSharedArrayError",
    "InvalidSpawnError",
    "LockOwnerDiedError",
    "LockTimeoutError",
    "MailboxFullError",
    "MessageNotSerializableError",
    "MessageTooLargeError",
    "RemoteActorError",
    "Permit",
    "Reply",
    "RuntimeClosedError",
    "SharedArray",
    "SharedMemoryFullError",
    "SharedMemoryService",
    "SharedSemaphore",
    "StaleHandleError",
]
