"""RL hyperparameters that evolutionary HPO is allowed to mutate.

An ``RLParameter`` says *how* one hyperparameter may move (its bounds, its type, how much it grows or
shrinks in one mutation). A ``HyperparameterConfig`` names the hyperparameters of an agent that may be
mutated, exactly as in the guide::

    hp_config = HyperparameterConfig(
        lr_actor=RLParameter(min=1e-4, max=1e-2),
        batch_size=RLParameter(min=8, max=512, dtype=int),
        learn_step=RLParameter(min=20, max=200, dtype=int, grow_factor=1.5, shrink_factor=0.75),
    )

Neither object holds the current value: the value lives on the agent (``agent.lr_actor``). An RL
hyperparameter mutation is therefore three lines (this is what ``Mutations`` does)::

    name = hp_config.sample(rng)
    new_value = hp_config[name].mutate(getattr(agent, name), rng)
    agent.set_hyperparameter(name, new_value)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

# dtype objects <-> the strings stored in plain-dict configs (checkpoints, run records).
_DTYPES: dict[str, type] = {"float": float, "int": int}


@dataclass(frozen=True)
class RLParameter:
    """Bounds and step sizes for one mutable RL hyperparameter.

    A mutation multiplies the current value by ``grow_factor`` or by ``shrink_factor`` (each with
    probability 1/2) and clips the result to ``[min, max]``. Multiplicative steps suit learning rates
    and batch sizes, whose sensible values span orders of magnitude; that is also why bounds must be
    non-negative.

    Note the drift: with the defaults, one grow and one shrink give ``1.2 * 0.8 = 0.96``, so repeated
    mutation slowly pushes values down. ``shrink_factor = 1 / grow_factor`` has no drift.
    """

    min: float
    max: float
    dtype: type = float
    grow_factor: float = 1.2
    shrink_factor: float = 0.8

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES.values():
            raise ValueError(f"RLParameter dtype must be float or int, got {self.dtype!r}")
        for field in ("min", "max", "grow_factor", "shrink_factor"):
            value = getattr(self, field)
            # bool is a Real in Python; `min=True` is almost certainly a mistake.
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"RLParameter {field} must be a finite number, got {value!r}")
        if self.min > self.max:
            raise ValueError(f"RLParameter min must be <= max, got min={self.min}, max={self.max}")
        if self.min < 0:
            raise ValueError(
                f"RLParameter bounds must be non-negative (mutation multiplies the value), got min={self.min}"
            )
        if self.dtype is int and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError(
                f"RLParameter with dtype=int needs whole-number bounds, got min={self.min}, max={self.max}"
            )
        if self.grow_factor <= 0 or self.shrink_factor <= 0:
            raise ValueError(
                "RLParameter grow_factor and shrink_factor must be positive, "
                f"got grow_factor={self.grow_factor}, shrink_factor={self.shrink_factor}"
            )
        if self.grow_factor < 1:
            raise ValueError(f"RLParameter grow_factor must be >= 1 (it grows the value), got {self.grow_factor}")
        if self.shrink_factor > 1:
            raise ValueError(f"RLParameter shrink_factor must be <= 1 (it shrinks the value), got {self.shrink_factor}")

    def mutate(self, value: float, rng: np.random.Generator) -> float | int:
        """Return a grown or shrunk copy of ``value``, clipped to ``[min, max]`` and cast to ``dtype``.

        * grow and shrink are equally likely (one ``rng.random()`` draw decides);
        * an int value always moves by at least 1 (``round(2 * 1.2) == 2`` would otherwise freeze small
          ints such as ``learn_step=2`` forever);
        * at a bound, a step past the bound is clipped back, so the value stays where it is; the coin is
          not re-tossed, which keeps "grow" and "shrink" equally likely from every value;
        * a value that starts outside ``[min, max]`` (e.g. from ``INIT_HP``) is clipped into range.
        """
        grow = rng.random() < 0.5
        new_value = value * (self.grow_factor if grow else self.shrink_factor)
        if self.dtype is int:
            new_value = round(new_value)
            if grow and new_value <= value:
                new_value = int(value) + 1
            elif not grow and new_value >= value:
                new_value = math.ceil(value) - 1
        new_value = min(max(new_value, self.min), self.max)
        return self.dtype(new_value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-safe), inverse of ``RLParameter.from_dict``."""
        return {
            "min": self.min,
            "max": self.max,
            "dtype": self.dtype.__name__,
            "grow_factor": self.grow_factor,
            "shrink_factor": self.shrink_factor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLParameter:
        """Rebuild an ``RLParameter`` from ``to_dict()`` output."""
        data = dict(data)
        dtype_name = data.pop("dtype", "float")
        if dtype_name not in _DTYPES:
            raise ValueError(f"RLParameter dtype must be one of {sorted(_DTYPES)}, got {dtype_name!r}")
        return cls(dtype=_DTYPES[dtype_name], **data)


class HyperparameterConfig:
    """The RL hyperparameters that may be mutated, by agent attribute name.

    Behaves like a read-only mapping: ``hp_config["lr_actor"]``, ``"lr_actor" in hp_config``,
    ``len(hp_config)`` and iteration over names.
    """

    def __init__(self, **params: RLParameter) -> None:
        for name, param in params.items():
            if not isinstance(param, RLParameter):
                raise TypeError(
                    f"HyperparameterConfig value for '{name}' must be an RLParameter, "
                    f"got {type(param).__name__}: {param!r}"
                )
        self._params: dict[str, RLParameter] = dict(params)

    def __getitem__(self, name: str) -> RLParameter:
        if name not in self._params:
            raise KeyError(f"'{name}' is not in this HyperparameterConfig; it has {self.names()}")
        return self._params[name]

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HyperparameterConfig) and self._params == other._params

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={param!r}" for name, param in self._params.items())
        return f"HyperparameterConfig({inner})"

    def names(self) -> list[str]:
        """The mutable hyperparameter names, in the order they were given."""
        return list(self._params)

    def items(self) -> list[tuple[str, RLParameter]]:
        return list(self._params.items())

    def sample(self, rng: np.random.Generator) -> str:
        """Pick the name of the hyperparameter to mutate, uniformly at random."""
        if not self._params:
            raise ValueError("HyperparameterConfig is empty: there is no RL hyperparameter to mutate")
        return self.names()[int(rng.integers(len(self._params)))]

    def check(self, agent: Any) -> None:
        """Raise ``ValueError`` if a configured name is not one of ``agent.hp_names`` or not a number.

        Called when a population is created, so a typo (``lr_actr``) fails at once rather than at the
        first RL hyperparameter mutation, hours into a run.
        """
        allowed = tuple(agent.hp_names)
        for name in self._params:
            if name not in allowed:
                raise ValueError(
                    f"hp_config key '{name}' is not a mutable hyperparameter of {type(agent).__name__}; "
                    f"expected one of {allowed}"
                )
            value = getattr(agent, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"hp_config key '{name}': this {type(agent).__name__} has {name}={value!r}, but evolution "
                    "mutates single numbers only (e.g. a per-agent expl_noise dict cannot be mutated)"
                )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (JSON-safe), for checkpoints and run records."""
        return {name: param.to_dict() for name, param in self._params.items()}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> HyperparameterConfig:
        """Rebuild a config from ``to_dict()`` output."""
        return cls(**{name: RLParameter.from_dict(param) for name, param in data.items()})
