"""factorization.json format 2: clusters carry generators and storage units; format 1 files
still load and get their units from the substations."""

from __future__ import annotations

import json
import warnings

import pytest

from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import (
    Cluster,
    FactorizationFile,
    load_factorization,
    parse_factorization,
)

# a 4-substation grid: generators at substations 0, 2, 3, 3; storage units at 1 and 3
GEN_SUB, STORAGE_SUB = [0, 2, 3, 3], [1, 3]
FORMAT1 = {"format": 1, "env": "toy", "method": "m", "params": {"q": 0.7},
           "clusters": [{"substations": [0, 1], "lines": [0, 1]},
                        {"substations": [2, 3], "lines": [2]}]}  # fmt: skip
SIZES = {"n_sub": 4, "n_line": 3, "n_gen": 4, "n_storage": 2}


def test_format1_units_follow_their_substation_and_round_trip_as_format2(tmp_path):
    fact = parse_factorization(FORMAT1, **SIZES).with_units(GEN_SUB, STORAGE_SUB)
    assert fact.has_units
    assert [c.generators for c in fact.clusters] == [(0,), (1, 2, 3)]
    assert [c.storages for c in fact.clusters] == [(0,), (1,)]
    doc = fact.to_dict()
    assert doc["format"] == 2 and doc["clusters"][1]["generators"] == [1, 2, 3]
    path = tmp_path / "factorization.json"
    path.write_text(json.dumps(doc))
    back = load_factorization(path)
    assert back.clusters == fact.clusters and back.params == {"q": 0.7}
    assert back.to_dict() == doc
    # a file without units stays format 1
    assert parse_factorization(FORMAT1).to_dict()["format"] == 1
    central = fact.centralized()
    assert central.clusters[0].generators == (0, 1, 2, 3)
    assert central.clusters[0].storages == (0, 1)


def _format2(changes=None):
    doc = json.loads(json.dumps(FORMAT1))
    doc["format"] = 2
    units = [((0,), (0,)), ((1, 2, 3), (1,))]
    for c, (g, s) in zip(doc["clusters"], units):
        c.update(generators=list(g), storages=list(s))
    for (i, key), value in (changes or {}).items():
        doc["clusters"][i][key] = value
    return doc


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({(0, "generators"): [0, 1]}, r"generators \[1\] appear in more than one cluster"),
        ({(1, "generators"): [1, 2]}, r"generators \[3\] are in no cluster"),
        ({(1, "storages"): [1, 5]}, r"unknown storages \[5\]"),
        ({(0, "generators"): "0"}, "generators must be a list of integers"),
    ],
)
def test_format2_units_form_a_partition(changes, message):
    assert parse_factorization(_format2(), **SIZES).clusters[1].generators == (1, 2, 3)
    with pytest.raises(UserError, match=message):
        parse_factorization(_format2(changes), **SIZES)


def test_format2_cluster_without_units_and_unknown_format_are_refused():
    doc = _format2()
    del doc["clusters"][1]["storages"]
    with pytest.raises(UserError, match="cluster 1 has no storages"):
        parse_factorization(doc)
    with pytest.raises(UserError, match="format 1 or 2"):
        parse_factorization({**FORMAT1, "format": 3})
    lonely = FactorizationFile((Cluster((0, 1), (0,)),))
    with pytest.raises(UserError, match=r"substations \[2, 3\] of some generators"):
        lonely.with_units(GEN_SUB, STORAGE_SUB)


def test_thesis_partition_gets_every_unit_of_a_case14_storage_grid():
    """The shipped format-1 partition on the 14-bus grid with storage: every unit lands in the
    cluster of its substation, and the result validates against the grid's sizes."""
    from distributed_grid2op.envs import make_env

    env = make_env("educ_case14_storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # made for the sandbox, same grid
        fact = load_factorization(env=env)
    cls = type(env)
    units = fact.with_units(cls.gen_to_subid, cls.storage_to_subid)
    owner = fact.cluster_of_substation()
    for i, c in enumerate(units.clusters):
        assert all(owner[int(cls.gen_to_subid[g])] == i for g in c.generators)
        assert all(owner[int(cls.storage_to_subid[s])] == i for s in c.storages)
    again = parse_factorization(units.to_dict(), n_sub=env.n_sub, n_line=env.n_line,
                                n_gen=env.n_gen, n_storage=env.n_storage)  # fmt: skip
    assert again.clusters == units.clusters
    assert sorted(g for c in again.clusters for g in c.generators) == list(range(env.n_gen))
