"""The actor programming model: what a script author subclasses, holds and catches.

Import from here: ``from actors import Actor, ActorRef``. The machinery that runs actors
lives in ``runtime``; this package never imports it.
"""

from __future__ import annotations

from ._compiled import compiled_methods

# the dataclasses and records defined below compile their methods once per installation
with compiled_methods():
    from ._actor import Actor as Actor
    from ._context import ActorContext as ActorContext
    from ._context import RuntimeServices as RuntimeServices
    from ._context import Timer as Timer
    from ._errors import ActorDeadError as ActorDeadError
    from ._errors import ActorNameTakenError as ActorNameTakenError
    from ._errors import ActorNotFoundError as ActorNotFoundError
    from ._errors import ActorsError as ActorsError
    from ._errors import ActorStartError as ActorStartError
    from ._errors import AskTimeoutError as AskTimeoutError
    from ._errors import DescriptorLimitError as DescriptorLimitError
    from ._errors import EscalationError as EscalationError
    from ._errors import InvalidArgumentError as InvalidArgumentError
    from ._errors import InvalidConfigError as InvalidConfigError
    from ._errors import InvalidSharedArrayError as InvalidSharedArrayError
    from ._errors import InvalidSpawnError as InvalidSpawnError
    from ._errors import InvalidSupervisorError as InvalidSupervisorError
    from ._errors import LockOwnerDiedError as LockOwnerDiedError
    from ._errors import LockTimeoutError as LockTimeoutError
    from ._errors import MailboxFullError as MailboxFullError
    from ._errors import MessageNotSerializableError as MessageNotSerializableError
    from ._errors import MessageTooLargeError as MessageTooLargeError
    from ._errors import MissingDependencyError as MissingDependencyError
    from ._errors import RemoteActorError as RemoteActorError
    from ._errors import RuntimeAlreadyRunningError as RuntimeAlreadyRunningError
    from ._errors import RuntimeClosedError as RuntimeClosedError
    from ._errors import SharedArrayNotLocalError as SharedArrayNotLocalError
    from ._errors import SharedMemoryFullError as SharedMemoryFullError
    from ._errors import SharedNameTakenError as SharedNameTakenError
    from ._errors import StaleHandleError as StaleHandleError
    from ._errors import SupervisorNameTakenError as SupervisorNameTakenError
    from ._errors import UnsafeDirectoryError as UnsafeDirectoryError
    from ._errors import UnsupportedBackendError as UnsupportedBackendError
    from ._ref import ActorRef as ActorRef
    from ._reply import Reply as Reply
    from ._shared import Permit as Permit
    from ._shared import SharedArray as SharedArray
    from ._shared import SharedMemoryService as SharedMemoryService
    from ._shared import SharedSemaphore as SharedSemaphore
    from ._supervision import DEFAULT_MAX_RESTARTS as DEFAULT_MAX_RESTARTS
    from ._supervision import DEFAULT_PERIOD as DEFAULT_PERIOD
    from ._supervision import Backoff as Backoff
    from ._supervision import DeadLetterReason as DeadLetterReason
    from ._supervision import Failure as Failure
    from ._supervision import LifecycleState as LifecycleState
    from ._supervision import OnError as OnError
    from ._supervision import RestartType as RestartType
    from ._supervision import StopReason as StopReason
    from ._supervision import Strategy as Strategy
    from ._supervision import Supervisor as Supervisor
    from ._supervision import Terminated as Terminated

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_PERIOD",
    "Actor",
    "ActorContext",
    "ActorDeadError",
    "ActorNameTakenError",
    "ActorNotFoundError",
    "ActorRef",
    "ActorStartError",
    "ActorsError",
    "AskTimeoutError",
    "Backoff",
    "EscalationError",
    "DeadLetterReason",
    "DescriptorLimitError",
    "Failure",
    "LifecycleState",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidSharedArrayError",
    "InvalidSpawnError",
    "InvalidSupervisorError",
    "LockOwnerDiedError",
    "LockTimeoutError",
    "MailboxFullError",
    "MessageNotSerializableError",
    "MessageTooLargeError",
    "MissingDependencyError",
    "OnError",
    "RemoteActorError",
    "Permit",
    "Reply",
    "RuntimeAlreadyRunningError",
    "RuntimeClosedError",
    "RuntimeServices",
    "SharedArray",
    "SharedArrayNotLocalError",
    "SharedMemoryFullError",
    "SharedNameTakenError",
    "SharedMemoryService",
    "SharedSemaphore",
    "StaleHandleError",
    "SupervisorNameTakenError",
    "UnsafeDirectoryError",
    "UnsupportedBackendError",
    "StopReason",
    "RestartType",
    "Strategy",
    "Supervisor",
    "Terminated",
    "Timer",
]
