"""Value systems: the three packaged ones, a construction-stage taxonomy.json, malformed inputs."""

import json

import pytest
import yaml

from valuelex.errors import StudyError
from valuelex.evaluate.systems import dimension_key, load_value_system


def test_packaged_valuelex_follows_the_paper():
    system = load_value_system("valuelex")
    assert [d.name for d in system.dimensions] == ["Competence", "Character", "Integrity"]
    subs = {d.name: [s.name for s in d.subdimensions] for d in system.dimensions}
    assert subs == {"Competence": ["Self-Competent", "User-Oriented"], "Character": ["Social", "Idealistic"],
                    "Integrity": ["Professional", "Ethical"]}
    assert system.leaf_keys() == ("self_competent", "user_oriented", "social", "idealistic", "professional", "ethical")
    assert [d.key for d in system.parents()] == ["competence", "character", "integrity"]
    # section 4.1's anchor words are where the paper puts them
    assert {"accuracy", "improvement", "completeness", "knowledge"} <= set(system.dimension("self_competent").anchors)
    assert {"confidentiality", "explainability", "accessibility"} <= set(system.dimension("professional").anchors)
    for dim in system.all_dimensions():
        assert dim.definition and dim.anchors
        assert dim.level == ("subdimension" if dim.parent else "dimension")
    for leaf in system.leaves():
        assert leaf.parent in {"competence", "character", "integrity"} and leaf.conflicts


@pytest.mark.parametrize(("name", "leaves"), [
    ("schwartz", ["self_direction", "stimulation", "hedonism", "achievement", "power", "security", "conformity",
                  "tradition", "benevolence", "universalism"]),
    ("mft", ["care", "fairness", "loyalty", "authority", "sanctity"]),
])
def test_packaged_human_systems_are_flat(name, leaves):
    system = load_value_system(name)
    assert list(system.leaf_keys()) == leaves
    assert system.parents() == ()
    assert all(d.level == "dimension" and d.parent is None for d in system.leaves())
    assert system.source == "package"


def taxonomy(**over):
    doc = {
        "format_version": 1, "name": "built",
        "dimensions": [
            {"name": "Competence", "size": 120,  # extra statistics of the producer are ignored
             "subdimensions": [
                 {"name": "Accuracy Focus", "definition": "Getting things right.",
                  "anchors": ["accuracy", "precision"]},
                 {"name": "Helpfulness", "definition": "Being of use.", "anchors": ["helpful"]}]},
            {"name": "Care", "definition": "Looking after people.", "anchors": ["care", "kindness"]},
        ],
    }
    doc.update(over)
    return doc


def test_taxonomy_json_from_construction(tmp_path):
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(taxonomy()))
    system = load_value_system(str(path))
    assert system.name == "built" and system.source == str(path)
    assert system.leaf_keys() == ("accuracy_focus", "helpfulness", "care")
    assert system.dimension("competence").definition == ""  # a parent is not judged: text optional
    assert system.dimension("care").level == "dimension"
    assert load_value_system(tmp_path).leaf_keys() == system.leaf_keys()  # a folder holding taxonomy.json
    no_name = taxonomy()
    del no_name["name"]
    path.write_text(json.dumps(no_name))
    assert load_value_system(path).name == "constructed"


@pytest.mark.parametrize(("doc", "field"), [
    (taxonomy(format_version=2), "format_version"),
    ({"dimensions": []}, "format_version"),
    (taxonomy(dimensions=[]), "dimensions"),
    (taxonomy(dimensions=[{"name": "X", "subdimensions": [{"name": "Y", "anchors": ["a"]}]}]),
     "dimensions[0].subdimensions[0].definition"),
    (taxonomy(dimensions=[{"name": "X", "subdimensions": [{"name": "Y", "definition": "d", "anchors": "a"}]}]),
     "dimensions[0].subdimensions[0].anchors"),
    (taxonomy(dimensions=[{"definition": "d", "anchors": ["a"]}]), "dimensions[0].name"),
    (taxonomy(dimensions=[{"name": "Leaf", "anchors": ["a"]}]), "dimensions[0].definition"),
    (taxonomy(dimensions=[{"name": "A b", "definition": "d", "anchors": ["a"]},
                          {"name": "a-B", "definition": "d", "anchors": ["a"]}]), "dimensions"),
    ([1, 2], "(top level)"),
])
def test_malformed_taxonomy_names_file_and_field(tmp_path, doc, field):
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(StudyError) as err:
        load_value_system(str(path))
    assert str(path) in str(err.value) and f"{field}:" in str(err.value)


def test_malformed_yaml_and_unknown_names(tmp_path):
    with pytest.raises(StudyError, match="unknown value system"):
        load_value_system("no-such-system")
    bad_json = tmp_path / "t.json"
    bad_json.write_text("{not json")
    with pytest.raises(StudyError, match="not valid JSON"):
        load_value_system(bad_json)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"version": 3, "name": "mine", "dimensions": []}))
    with pytest.raises(StudyError, match=r"mine.yaml: version: unsupported version 3"):
        load_value_system(path)
    path.write_text(yaml.safe_dump({"version": 1, "name": "mine", "dimensions": [
        {"name": "Honesty", "definition": "Telling the truth.", "anchors": ["honest"], "colour": "red"}]}))
    with pytest.raises(StudyError, match=r"mine.yaml: dimensions\[0\].colour: unknown field"):
        load_value_system(path)
    path.write_text(yaml.safe_dump({"version": 1, "name": "mine", "dimensions": [
        {"name": "Honesty", "definition": "Telling the truth.", "anchors": ["honest"], "conflicts": ["lying"]}]}))
    system = load_value_system(path)
    assert system.leaf_keys() == ("honesty",) and system.leaves()[0].conflicts == ("lying",)


def test_dimension_key_and_fingerprint():
    assert dimension_key("Self-Competent") == "self_competent"
    assert dimension_key("  Care / Harm ") == "care_harm"
    a, b = load_value_system("valuelex"), load_value_system("mft")
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == load_value_system("valuelex").fingerprint()
