"""ConfigurationError, the one exception a bad config produces, and the did-you-mean helper its messages use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ConfigurationError(Exception):
    """A mistake in a configuration: names the key path, what was found and what was expected.

    ``str(error)`` reads ``trainer.optimizer.lr: expected float, got "fast"``. Several mistakes found together
    are carried in one error (``errors``) and printed as a list, so a user fixes them in one pass.
    """

    def __init__(self, message: str, path: str | None = None, *, key: str | None = None) -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path or key or None
        # A constructor validating its own argument names only the key; ``located`` adds the object's path.
        self._relative = key is not None and not path
        self.errors: list[ConfigurationError] = [self]

    def located(self, path: str | None) -> ConfigurationError:
        """Place errors raised inside a constructor at that object's path (``key="lr"`` becomes ``...lr``)."""
        for leaf in self.errors:
            if leaf._relative:
                leaf.path, leaf._relative = join_path(path, leaf.path), False
            elif leaf.path is None:
                leaf.path = path or None
        return self

    @classmethod
    def combine(cls, errors: Sequence[ConfigurationError]) -> ConfigurationError:
        """One error for several: the error itself when there is one, else a list of all of them."""
        flat = [leaf for error in errors for leaf in error.errors]
        if len(flat) == 1:
            return flat[0]
        combined = cls(f"{len(flat)} problems in the configuration")
        combined.errors = flat
        return combined

    def __str__(self) -> str:
        if len(self.errors) > 1:
            lines = [f"{self.message}:"] + [f"  - {error}" for error in self.errors]
            return "\n".join(lines)
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self):  # keeps ``errors`` when sent between processes
        return _rebuild, (type(self), self.message, self.path, self.errors if len(self.errors) > 1 else None)


def _rebuild(cls: type[ConfigurationError], message: str, path: str | None, errors: list | None) -> ConfigurationError:
    error = cls(message, path)
    if errors:
        error.errors = errors
    return error


def join_path(prefix: str | None, key: str | int) -> str:
    """``join_path("trainer", "optimizer") == "trainer.optimizer"``; an empty prefix gives the key alone."""
    return f"{prefix}.{key}" if prefix else str(key)


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment).

    Hand-written because the standard library has none (difflib's ratio is not a distance) and it is ten lines.
    """
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            cost = 0 if char_a == char_b else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name``, or None when nothing is close enough to be a likely typo.

    ``-`` and ``_`` are interchangeable and case is ignored, so ``"linear-with-warmup"`` finds
    ``"linear_with_warmup"``.
    """

    def normal(text: str) -> str:
        return text.lower().replace("-", "_")

    best: tuple[int, str] | None = None
    for candidate in candidates:
        distance = _edit_distance(normal(name), normal(candidate))
        if best is None or distance < best[0]:
            best = (distance, candidate)
    if best is None:
        return None
    allowed = min(3, max(1, len(name) // 3)) if len(name) > 2 else 0
    return best[1] if best[0] <= allowed else None


def missing_names(names: Iterable[str], candidates: Sequence[str]) -> str:
    """``"a" (did you mean "b"?), "c"``: each missing name quoted, with the closest of ``candidates`` where one is
    close; for messages about columns or keys a config names that the data lacks."""
    described = []
    for name in names:
        suggestion = did_you_mean(name, candidates)
        described.append(f'"{name}"' + (f' (did you mean "{suggestion}"?)' if suggestion else ""))
    return ", ".join(described)


def unknown_name_message(kind: str, name: str, candidates: Sequence[str]) -> str:
    """``unknown key "optimiser"; did you mean "optimizer"? valid keys: ...`` for any kind of name."""
    message = f'unknown {kind} "{name}"'
    suggestion = did_you_mean(name, candidates)
    message += f'; did you mean "{suggestion}"?' if suggestion is not None else ";" if candidates else ""
    if candidates:
        message += f" valid {kind}s: {', '.join(candidates)}"
    return message
