"""Shared (de)serialisation of the families' hyperparameter dataclasses."""

from __future__ import annotations

from dataclasses import asdict, fields

from amtcli.options import FeatureSpec


class FamilyConfig:
    """Mixin for a frozen dataclass of hyperparameters with a ``features: FeatureSpec`` field.

    ``to_dict`` gives JSON-ready values (tuples as lists, the FeatureSpec as its dict);
    ``from_dict`` reverses it: a missing ``features`` takes the field's default and list
    values of tuple fields become tuples. Unknown keys raise TypeError.
    """

    def to_dict(self) -> dict:
        out = asdict(self)  # type: ignore[call-overload]
        out["features"] = self.features.to_dict()  # type: ignore[attr-defined]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in out.items()}

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        defaults = {f.name: f.default for f in fields(cls)}  # type: ignore[arg-type]
        features = data.get("features")
        data["features"] = FeatureSpec.from_dict(features) if features is not None else defaults["features"]
        for name, default in defaults.items():
            if isinstance(default, tuple) and name in data:
                data[name] = tuple(data[name])
        return cls(**data)
