"""The consent tests reuse the recordings fixtures (a clip, a spool, a fake edge) for withdrawal's effects."""

from tests.recordings.fixtures import clip, clip_facts, fake_edge, spool  # noqa: F401
