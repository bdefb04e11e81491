"""The spaCy component ``windowner_ner`` (extra ``windowner[spacy]``), on spacy.blank("en")."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

spacy = pytest.importorskip(
    "spacy", reason="spaCy is not installed (it is the optional extra: make spacy)"
)

from windowner.metrics import get_entities  # noqa: E402
from windowner.tagger import Tagger  # noqa: E402
from windowner.train import train  # noqa: E402

from .helpers import tiny_config  # noqa: E402

TEXTS = [
    "Camille Rousseau said the exhibition in Paris would run until June.",
    "The Austrian government approved new climate targets.\n\nThornton Aerospace shares rose.",
    "  ",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spacy") / "run"
    conf = tiny_config(seed=4, features={"window": 3, "caps_dim": 3}, model={"hidden": 20})
    train(conf, out_dir=out)
    return out


def expected_ents(tagger: Tagger, doc, by_sentence: bool) -> list[tuple[str, int, int]]:
    """windowner's own entities on the doc's non-space tokens, as (label, start, end)."""
    groups = list(doc.sents) if by_sentence else [doc[:]]
    out = []
    for group in groups:
        tokens = [t for t in group if not t.is_space]
        if not tokens:
            continue
        (tags,) = tagger.tag([[t.text for t in tokens]])
        out += [(k, tokens[s].i, tokens[e - 1].i + 1) for k, s, e in get_entities(tags)]
    return out


def test_add_pipe_sets_doc_ents_like_the_tagger(model):
    nlp = spacy.blank("en")
    nlp.add_pipe("windowner_ner", config={"model": str(model)})
    tagger = Tagger.load(model / "model.npz")
    found = 0
    for text in TEXTS:
        doc = nlp(text)
        got = [(e.label_, e.start, e.end) for e in doc.ents]
        assert got == expected_ents(tagger, doc, by_sentence=False)
        assert all(not t.is_space for e in doc.ents for t in e)
        found += len(got)
    assert found > 0
    assert [d.to_json() for d in nlp.pipe(TEXTS, batch_size=2)] == [nlp(t).to_json() for t in TEXTS]


def test_sentence_boundaries_are_used_when_the_pipeline_sets_them(model):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("windowner_ner", config={"model": str(model / "model.npz")})
    tagger = Tagger.load(model / "model.npz")
    doc = nlp(" ".join(TEXTS[:2]))
    assert len(list(doc.sents)) >= 3
    assert [(e.label_, e.start, e.end) for e in doc.ents] == expected_ents(tagger, doc, True)


def test_overwrite_false_keeps_existing_entities(model):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "CITY", "pattern": "Paris"}])
    nlp.add_pipe("windowner_ner", config={"model": str(model), "overwrite": False})
    doc = nlp(TEXTS[0])
    labels = {e.text: e.label_ for e in doc.ents}
    assert labels["Paris"] == "CITY"
    assert "Camille Rousseau" in labels


@pytest.mark.slow
def test_factory_is_an_entry_point_found_without_importing_windowner(model):
    (ep,) = [e for e in entry_points(group="spacy_factories") if e.name == "windowner_ner"]
    assert ep.value == "windowner.spacy_component:make_windowner_ner"
    code = (
        "import spacy\n"
        "nlp = spacy.blank('en')\n"
        f"nlp.add_pipe('windowner_ner', config={{'model': {str(model)!r}}})\n"
        "print([(e.text, e.label_) for e in nlp('Camille Rousseau visited Paris.').ents])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[")
