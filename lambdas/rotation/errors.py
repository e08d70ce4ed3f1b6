"""Typed errors of the rotation. The class name is the error name the state machine's Retry/Catch match.

Messages are shown to operators (Step Functions console, SNS) and therefore never contain a secret.
"""

from __future__ import annotations


class RotationError(Exception):
    """Base of every error the engine raises on purpose."""

    @property
    def name(self) -> str:
        return type(self).__name__


class InvalidSettings(RotationError):
    """The settings file (or a value derived from it) is invalid; the message names the field path."""


class InvalidEnvironment(RotationError):
    """A Lambda environment variable is missing or malformed (a deployment error)."""


class InvalidRequest(RotationError):
    """The execution input or the state handed to a step is invalid; the message names the field."""


class UnknownUser(RotationError):
    """The user is not in the settings, or does not exist under the managed IAM path."""


class SecretMissing(RotationError):
    """The user's secret is scheduled for deletion (a missing secret is created by the first rotation)."""


class SecretMalformed(RotationError):
    """A version of the user's secret is not the JSON object the engine and the agent expect."""


class RotationBlocked(RotationError):
    """The user's keys are in a state the engine will not guess about; the message says what to do."""


class NoTargets(RotationError):
    """No managed instance matches the user's server group."""


class TargetsOffline(RotationError):
    """Some target instances are not online (and offline targets are not allowed)."""


class TargetsUnsupported(RotationError):
    """Some target instances cannot run the document (SSM Agent too old, not Linux, EC2 in a tag group)."""


class RotationInProgress(RotationError):
    """Another execution holds the user's lock."""


class KeyLimitReached(RotationError):
    """The user already has two keys and neither may be deleted."""


class NewKeyNotYetValid(RotationError):
    """The new key is not accepted by STS yet (IAM propagation); retryable."""


class RotationsNotStarted(RotationError):
    """The scheduled run could not start some due users' rotations; the message counts and names them."""


class TargetsUnconfirmed(RotationError):
    """Some targets failed, or did not confirm the new key in time; the message names them."""


class OldKeyStillInUse(RotationError):
    """The old key was used after the cut-over; the message names the service and region."""


class StateConflict(RotationError):
    """AWS no longer matches the rotation state (e.g. someone changed the keys or the secret meanwhile)."""
