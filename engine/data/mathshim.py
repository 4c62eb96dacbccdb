"""The one place that makes DeepMind's mathematics-dataset (2019) import and run on sympy >= 1.7 and numpy 2.

Three things moved under it: sympy put `base_solution_linear` in `sympy.solvers.diophantine.diophantine`, and numpy 2
dropped the `np.object` alias and `ndarray.itemset`. Only `mathematics_dataset.sample.polynomials` uses them, so the
shim re-exports the sympy function where the package looks for it and gives that one module a numpy namespace that
still has both; numpy itself is left untouched for everyone else.

Python 3.12 refuses floats in `random.randint` / `randrange` (3.11 only warned), and `numbers.round_number` passes
whole-valued floats. A further fix is for reproducibility: `util.composition` draws variable names with
`random.choice(list(a_set_of_letters))`, whose order follows PYTHONHASHSEED, and shuffles `list(a_set_of_entities)`,
whose order follows memory addresses, so the same seed gave other questions in another process. Every module of the
package therefore gets a `random` that turns whole floats into ints, picks from a sorted pool of strings (still
uniform) and sorts entities by their text before a shuffle. The generators draw from three global streams (Python's,
numpy's and sympy's own, which `randprime` uses); `seeded` seeds all three and restores them afterwards.
"""
from __future__ import annotations

import functools
import importlib
import random
import sys
import types
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np


class _ItemsetArray(np.ndarray):
    """An ndarray with numpy 1's `itemset(index, value)`, which is plain item assignment."""

    def itemset(self, index: Any, value: Any) -> None:
        self[index] = value


class _Numpy1Namespace(types.ModuleType):
    """numpy, plus `object` and arrays from `zeros` / `empty` that still have `itemset`."""

    object = object

    def __init__(self) -> None:
        super().__init__("numpy_compat_for_mathematics_dataset")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def zeros(*args: Any, **kwargs: Any) -> np.ndarray:
        return np.zeros(*args, **kwargs).view(_ItemsetArray)

    @staticmethod
    def empty(*args: Any, **kwargs: Any) -> np.ndarray:
        return np.empty(*args, **kwargs).view(_ItemsetArray)


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _DatasetRandom(types.ModuleType):
    """Python's `random`, except that `choice` and `shuffle` start from a canonical order of set-born pools and
    `randint` / `randrange` accept whole-valued floats."""

    def __init__(self, entity_type: type) -> None:
        super().__init__("random_for_mathematics_dataset")
        self._entity_type = entity_type

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)

    @staticmethod
    def choice(pool: Any) -> Any:
        items = list(pool)
        if items and all(isinstance(item, str) for item in items):
            items.sort()
        return random.choice(items)

    def shuffle(self, items: list) -> None:
        if items and all(isinstance(item, self._entity_type) for item in items):
            # The private fields, not the properties: reading `description` marks the entity as used, which
            # changes the question text.
            items.sort(key=lambda entity: (entity._description, entity._child_description or ""))
        random.shuffle(items)

    @staticmethod
    def randint(low: Any, high: Any) -> int:
        return random.randint(_whole(low), _whole(high))

    @staticmethod
    def randrange(*args: Any) -> int:
        return random.randrange(*(_whole(arg) for arg in args))


@functools.lru_cache(maxsize=1)
def math_modules() -> types.ModuleType:
    """`mathematics_dataset.modules.modules`, imported with the fixes applied (cached: they apply once)."""
    from sympy.solvers.diophantine.diophantine import base_solution_linear

    # `sympy.solvers.diophantine` as an attribute is the function of that name, so take the package from importlib.
    diophantine_pkg = importlib.import_module("sympy.solvers.diophantine")

    if not hasattr(diophantine_pkg, "base_solution_linear"):
        diophantine_pkg.base_solution_linear = base_solution_linear
    from mathematics_dataset.sample import polynomials

    polynomials.np = _Numpy1Namespace()
    from mathematics_dataset.util import composition

    dataset_random = _DatasetRandom(composition.Entity)
    from mathematics_dataset.modules import modules

    for name, module in list(sys.modules.items()):
        if name.startswith("mathematics_dataset.") and getattr(module, "random", None) is random:
            module.random = dataset_random
    return modules


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and sympy's global random streams for the block, then put all three back."""
    import sympy.core.random as sympy_random

    states = (random.getstate(), np.random.get_state(), sympy_random.rng.getstate())
    try:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        sympy_random.rng.seed(seed)
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        sympy_random.rng.setstate(states[2])
