"""The speaker table and the speaker-disjoint split (teller_agent/data/speakers.py).

Tests that read ``../shared/data`` skip with a reason when it is absent (``shared_data`` fixture).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from teller_agent.data import speakers as sp
from teller_agent.data.speakers import (
    HELDOUT_SPEAKERS,
    SPLITS,
    VALIDATION_SPEAKERS,
    SpeakerEntry,
    assign_split,
    check_labels,
    clips_in_split,
    load_speakers,
    read_table,
    speaker_of,
    split_of,
    write_table,
)
from teller_agent.errors import TellerError

OBAMA = ("EDTalk__uncrop_Obama", "styletalk__Obama_clip1", "styletalk__Obama_clip2", "styletalk__Obama_clip3",
         "subtitleEffect__obama", "Speech-to_lips__obama")


@pytest.fixture(scope="module")
def table() -> dict[str, SpeakerEntry]:
    return load_speakers()


def _by_split(table) -> dict[str, list[SpeakerEntry]]:
    out = defaultdict(list)
    for e in table.values():
        out[e.split].append(e)
    return out


def test_table_covers_every_talking_video(shared_data: Path, table):
    videos = {p.stem for p in (shared_data / "talking").glob("*.mp4")}
    assert len(videos) >= 1052
    assert sorted(videos - set(table)) == [], "talking videos without a row in speakers.tsv"
    assert sorted(set(table) - videos) == [], "rows of speakers.tsv without a talking video"


def test_no_speaker_in_two_splits(table):
    splits_of_speaker = defaultdict(set)
    for e in table.values():
        splits_of_speaker[e.speaker].add(e.split)
    assert {s: v for s, v in splits_of_speaker.items() if len(v) > 1} == {}


def test_every_split_is_non_empty(table):
    by = _by_split(table)
    assert set(by) == set(SPLITS)
    for split in SPLITS:
        assert len({e.speaker for e in by[split]}) >= 3, split
        assert clips_in_split(split) == sorted(e.clip for e in by[split])


def test_split_column_follows_the_speaker_lists(table):
    assert not set(HELDOUT_SPEAKERS) & set(VALIDATION_SPEAKERS)
    speakers = {e.speaker for e in table.values()}
    assert set(HELDOUT_SPEAKERS) <= speakers
    assert set(VALIDATION_SPEAKERS) <= speakers
    assert [e.clip for e in table.values() if e.split != assign_split(e.speaker)] == []


def test_evaluation_splits_mix_languages(table):
    by = _by_split(table)
    for split in ("heldout", "validation"):
        languages = {e.language for e in by[split]}
        assert {"en", "ar"} <= languages, split
        assert len(languages - {"unknown"}) >= 3, (split, languages)


def test_languages_are_codes(table):
    for e in table.values():
        assert e.language == "unknown" or (e.language.isalpha() and e.language.islower()
                                           and 2 <= len(e.language) <= 3), e
    assert {e.language for c, e in table.items() if c.startswith("Arabic-Lip-Reading__")} == {"ar"}
    assert table["DFRF__french"].language == "fr"


def test_known_multi_clip_speakers_share_a_label(table):
    assert len({table[c].speaker for c in OBAMA}) == 1
    assert table[OBAMA[0]].split == "train"
    assert table["styletalk__andrew_clip_1"].speaker == table["styletalk__andrew_clip_2"].speaker
    assert len({table[c].speaker for c in table if c.startswith("styletalk__feifeili")}) == 1
    # GRID: bbaf2n is speaker s1 (the s1 clips' source note, descriptor distance 0.08)
    assert {table[c].speaker for c in table if c.startswith("lipnet__s1_")} == {table["LipNet__bbaf2n"].speaker}
    assert table["LipNet__id2_vcd_swwp2s"].speaker == table["LipNet__pwij3p"].speaker


def test_lookups_accept_stems_names_and_paths(table):
    assert split_of("SadTalker__RD_Radio2_000") == "heldout"
    assert split_of("SadTalker__RD_Radio2_000.mp4") == "heldout"
    assert split_of(Path("/x/talking/styletalk__Obama_clip1.wav")) == "train"
    assert speaker_of("talking/styletalk__Obama_clip2.mp4") == table["EDTalk__uncrop_Obama"].speaker
    with pytest.raises(KeyError, match="not in"):
        split_of("no_such_clip")
    copy = load_speakers()
    copy.clear()  # a copy: the cached table is untouched
    assert split_of("DFRF__french") == "heldout"


def test_table_round_trip_and_rejects_a_speaker_in_two_splits(tmp_path, table):
    path = write_table(table.values(), tmp_path / "t.tsv")
    assert read_table(path) == table
    rows = [SpeakerEntry("a", "same", "en", "train", "x"), SpeakerEntry("b", "same", "en", "heldout", "x")]
    with pytest.raises(TellerError, match="both"):
        read_table(write_table(rows, tmp_path / "bad.tsv"))
    with pytest.raises(TellerError, match="split"):
        read_table(write_table([SpeakerEntry("a", "s", "en", "test", "x")], tmp_path / "bad2.tsv"))


def test_check_labels_on_synthetic_descriptors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128), rng.normal(size=128)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)  # about 1.4 apart
    near = a + 0.01 * rng.normal(size=128)  # about 0.11 from a
    look_alike = a + 0.55 * (b - a) / np.linalg.norm(b - a)  # 0.55 from a, 0.86 from b
    vectors = {"a1": a, "a2": near, "b1": b, "c1": look_alike}
    labels = {"a1": "p", "a2": "q", "b1": "p", "c1": "r"}
    conflicts = check_labels(labels, vectors)
    kinds = {(c.kind, c.speaker_a, c.speaker_b) for c in conflicts}
    assert ("merge", "p", "q") in kinds  # one face under two labels
    assert ("split", "p", "p") in kinds  # two faces under one label
    assert ("review", "p", "r") in kinds  # a look-alike in the 0.5-0.6 band
    assert [c.kind for c in conflicts][0] == "merge"
    split = next(c for c in conflicts if c.kind == "split")
    assert split.clips == ("a1", "b1") and split.distance == pytest.approx(np.linalg.norm(a - b), abs=1e-6)
    assert check_labels({"a1": "p", "a2": "p"}, {"a1": a, "a2": near}) == []


def test_descriptor_check_catches_a_mislabel(shared_data: Path, tmp_path, monkeypatch):
    """Two Obama clips from different repositories and one other person, labelled wrongly both ways."""
    talking = shared_data / "talking"
    videos = [talking / f"{s}.mp4" for s in ("EDTalk__uncrop_Obama", "Speech-to_lips__obama",
                                             "SadTalker__WDA_EdMarkey0_000")]
    cache = tmp_path / "descriptors.npz"
    desc = sp.compute_descriptors(videos, cache=cache)
    assert set(desc.vectors) == {v.stem for v in videos}
    assert all(n >= 3 for n in desc.faces.values())
    obama_a, obama_b, other = (v.stem for v in videos)
    conflicts = check_labels({obama_a: "x", obama_b: "y", other: "x"}, desc.vectors)
    kinds = {(c.kind, c.speaker_a, c.speaker_b) for c in conflicts}
    assert ("merge", "x", "y") in kinds or ("review", "x", "y") in kinds
    assert ("split", "x", "x") in kinds
    assert check_labels({obama_a: "o", obama_b: "o", other: "m"}, desc.vectors) == []

    # the cache answers the second call without decoding anything
    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached clip")

    monkeypatch.setattr(sp, "clip_descriptor", boom)
    again = sp.compute_descriptors(videos, cache=cache)
    for stem, vector in desc.vectors.items():
        np.testing.assert_allclose(again.vectors[stem], vector)
