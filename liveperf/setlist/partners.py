"""Several partners in one song: ``[[song.partner]]`` tables (``liveperf.setlist.schema``).

A song is its first partner (its own ``mode``, ``channel``, ``voice``... as always, so a setlist with no partner
tables plays as before). Each ``[[song.partner]]`` table adds one more, playing at the same time on its own
channel: it takes the song's fields and overrides the ones it names, from ``PARTNER_FIELDS`` only (tempo, key,
meter, take and the other song-wide fields belong to the song). A partner with no ``seed`` gets the song's seed
plus 10 per partner, so two partners in the same mode do not play the same random choices. ``name`` labels the
partner on the stage view and in reports (default: its mode). Every partner needs its own channel: two voices on one
channel would cut each other's notes. Pure functions, used by the setlist loader.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from liveperf.setlist.fields import SetlistError
from liveperf.music.style import KNOB_PARAMS

MAX_PARTNERS = 8
SEED_STEP = 10  # partner k's default seed: the song's + SEED_STEP * (k - 1)
PARTNER_FIELDS = ("name", "mode", "channel", "voice", "pitch_range", "velocity", "temperature", "top_k", "top_p",
                  "density", "max_note_beats", "seed", "comp_rhythm", "comp_model", "model", "duet_model",
                  "duet_predictor", "phrase_model", "gan_models", "vae_models", "latent", "phrase_every_bars",
                  "candidates", "answer_candidates", "sigma", "walk_step", "anchors", "silence_steps",
                  "response_bars", "swing", "humanize_ms", "program", "bank", *KNOB_PARAMS)


def parse_partners(raw: dict, song, index: int, path: Path, parse_song: Callable) -> tuple:
    """The song's partners after the first (``Song`` objects, ``partner_name`` set), from ``raw["partner"]``.
    ``parse_song(table, index, path)`` is the setlist's song parser. Raises ``SetlistError`` naming the file, the
    song, the partner and the field."""
    where = f"{path}: song {index + 1} ({song.title!r})"
    tables = raw.get("partner", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SetlistError(f"{where}: field 'partner' must be [[song.partner]] tables")
    if len(tables) + 1 > MAX_PARTNERS:
        raise SetlistError(f"{where}: {len(tables) + 1} partners; at most {MAX_PARTNERS}")
    base = {k: v for k, v in raw.items() if k != "partner"}
    partners = []
    for k, table in enumerate(tables, start=2):
        here = f"{where} partner {k}"
        unknown = sorted(set(table) - set(PARTNER_FIELDS))
        if unknown:
            raise SetlistError(f"{here}: unknown or song-wide field(s) {unknown}; a partner may set: "
                               f"{', '.join(PARTNER_FIELDS)}")
        name = table.get("name", "")
        if not isinstance(name, str):
            raise SetlistError(f"{here}: field 'name' = {name!r} is not allowed; it must be a string")
        merged = base | {key: value for key, value in table.items() if key != "name"}
        if "seed" not in table:
            merged["seed"] = song.seed + SEED_STEP * (k - 1)
        try:
            partner = parse_song(merged, index, path)
        except SetlistError as exc:
            raise SetlistError(str(exc).replace(where, here, 1)) from None
        partners.append(replace(partner, partner_name=name.strip() or partner.mode))
    seen = {song.channel: 1}
    for k, partner in enumerate(partners, start=2):
        if partner.channel in seen:
            raise SetlistError(f"{where} partner {k}: field 'channel' = {partner.channel}: partner {seen[partner.channel]}"
                               f" plays on that channel; each partner needs its own channel")
        seen[partner.channel] = k
    return tuple(partners)
