"""The ``jack-native`` process callback: machine code compiled by numba, run by JACK's real-time thread.

``liveperf.io.jack_native`` (the client that owns the arrays) says why the callback is native and what the rings
are; this module is the callback itself and the layout of the memory it shares with Python:

- ``ctl``: one int64 array, indexed by the ``C_*`` constants: pointers to the other arrays, ring counters,
  counters, the frame clock's state;
- the input ring (``in_meta`` [RING, 3]: stamp ns, size, JACK frame (``jack_last_frame_time``'s scale,
  modulo 2**32); ``in_data`` [RING, IN_BYTES]), the output ring
  (``out_ring`` [RING, 2]: due ns, packed bytes), the emitted ring (``emit_ring`` [RING, 2]: due ns, sent ns);
- the **reflex** (harmonize's answer in the same cycle, see below): ``reflex`` [2, REFLEX_WORDS] (two tables,
  ``ctl[C_RX_ACTIVE]`` says which one is live), the reflex ring (``rx_ring`` [RING, 4]: input stamp ns, input
  bytes packed, answer bytes packed, answer sent ns) and ``sounding`` [16 * 128] (what the wire has sounding: the
  callback is the only sender on the port, so this is the truth, not a belief).

The reflex. The engine publishes, every grid step, which note the partner answers to each pitch the performer may
play at this step and the next (pre-sampled from the model's batched peek), with the time windows of the two
steps. When a performer note-on comes in, the callback looks its answer up and writes it to the output port *in
the same cycle, at the note-on's own frame*: the answer reaches the synth as early as a bare JACK loopback would
pass the note-on itself. It answers only when that cannot disturb what the engine and scheduler believe: the
table is enabled (``ctl[C_RX_ON]``: the engine's partner voice is silent), the note is on another channel than the
partner's (our own output echoed back is never answered), the performer channel matches (-1: any), and the
partner channel is quiet on the wire: nothing sounding, no note waiting in the output ring, no note-off waiting
to be swallowed. Otherwise it leaves the note to the engine (the answer then goes out a cycle or two later). Each
answer is reported in the reflex ring *before* its note-on is published in the input ring, so the engine always
knows of an answer when it handles the note-on that caused it.

The harmony also *ends* in the cycle of its cause's release (harmonize's rule: the partner holds its note until
the performer lets go of the note it answers), on the release's frame, as long as it still sounds and no other
partner note went out since. ``ctl[C_RX_HOLD]`` names it, ``(cause pitch << 12) | (channel << 7 | pitch)`` in one
word (-1: none): the callback sets it for its own answers, the engine for the harmonies it plays itself. The
engine's own note-off for it, which follows a cycle or more later, is then swallowed (``ENDED_HERE``). So a
performer who lifts one key and presses the next in the same millisecond finds the partner quiet, and gets the
next answer in that cycle too.

Repairs: what JACK drops, the callback sends again (issue 14). In JACK's default asynchronous mode a client that
does not finish its cycle in time loses that cycle's MIDI (jackd: ``client ... was not finished``), the sender's
output or, as often on a busy machine, what a *receiver* should have read (a synth's client, an outside recorder):
a 10-minute soak with a core busy saw a note-off lost that way leave a note sounding for 51 s. The sender cannot
see a receiver's loss, so it makes each note-off redundant; a peer disconnected by hand (a patchbay click) misses
every note-off sent while it was away.
- **Every note-off once more** (``ctl[C_RESEND_FRAMES]`` > 0, the show's ports: ``RESEND_MS`` later): each
  note-off the callback sends goes into the off queue and is sent again that many frames later, at a cycle's first
  frame, unless its pitch sounds again by then (``resent_offs``). A second note-off is harmless to a synth; a lost
  one is a note held until the same pitch comes again. ``frame_jumps`` counts the cycles JACK did not run this
  client at all (what was due in them goes out at the next cycle's first frame, ``late``). Whether a cycle's
  output was lost the callback cannot tell: judged against ``jack_get_cycle_times``' estimate of the next cycle's
  start, 18 % of the cycles of an idle dummy server at 64 frames would have counted as late.
- **A peer lost and back**: each cycle reads how many ports the output is connected to
  (``jack_port_connected``). When it falls, every note sounding then is *missed* (``peer_drops``); when it rises (a
  peer connected, by hand, by ``liveperf.io.jack_native_watch`` or after a server restart), each missed note that
  is not sounding again gets its note-off at the cycle's first frame (``missed_offs``), and once more next cycle
  (the off queue: a new link may not carry data in its first cycle). ``missed`` can be seeded by
  the owner before any peer is connected (a new client after a server restart: the notes the old one had sounding).
- **A transport Stop is obeyed at its frame** (``ctl[C_FOLLOW_TRANSPORT]``: the show follows MIDI clock): a Stop
  on the input hushes every note-on due from its frame on, until a Start or Continue (``hushed``; their note-offs
  are swallowed). The engine stops too, but a Python thread hears the Stop a cycle or more later, on a busy machine
  tens of ms, and notes it had handed over (or handed over meanwhile) would start after the Stop.
- **No second note-on for a sounding pitch**: a note-on for a (channel, pitch) the wire already has sounding gets a
  note-off at the same frame first (``restruck``), so no synth ever holds two voices that one note-off ends only
  one of.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

(C_CLIENT, C_RATE, C_PREV32, C_EXT_FRAME, C_IN_PORT, C_OUT_PORT, C_IN_META, C_IN_DATA, C_IN_W, C_IN_R, C_OUT_RING,
 C_OUT_W, C_OUT_R, C_EMIT_RING, C_EMIT_W, C_EMIT_R, C_EVENT, C_TIMESPEC, C_STAGE, C_SEM, C_DROPPED_ON,
 C_DROP_LATE_NS, C_CYCLES, C_IN_OVERFLOW, C_IN_TOO_LONG, C_LATE, C_LATE_DROPPED, C_WRITE_FAILED, C_EMIT_OVERFLOW,
 C_SWALLOWED, C_REVOKE_FROM, C_REVOKE_UPTO, C_REVOKED, C_MIN_CUR, C_MIN_PREV, C_BUCKET_START,
 C_REFLEX, C_RX_ACTIVE, C_RX_ON, C_RX_RING, C_RX_W, C_RX_R, C_SOUNDING, C_RX_STAGE, C_REFLEXES, C_RX_DECLINED,
 C_RX_HOLD, C_RX_RELEASED, C_FRAME_JUMPS, C_BASE0, C_WALL_BASE, C_FRAME0,
 C_MISSED, C_PEERS, C_PEER_DROPS, C_MISSED_OFFS, C_OFFQ, C_OFFQ_W, C_OFFQ_R, C_RESEND_FRAMES,
 C_RESENT_OFFS, C_RESTRUCK, C_FOLLOW_TRANSPORT, C_HUSH_FROM, C_HUSH_UNTIL, C_HUSHED, N_CTL) = range(67)

RING = 4096  # slots per ring (a power of two): ~2 s of a 2,000 messages/s flood
OFFQ = 1024  # note-offs waiting to be sent again (a power of two; full: a note-off is not repeated)
RESEND_MS = 25  # the show's ports repeat each note-off this much later (a receiver descheduled for a few cycles)
# A ring message's own late drop (a reaction: ``scheduler.REACTION_LATE_NS``), in µs, above its bytes in the packed
# word (bits 32..55; 0: the port's ``drop_late_ns``).
LATE_OK_SHIFT, LATE_OK_MAX_US = 32, (1 << 24) - 1
IN_BYTES = 64  # longest input event kept (sysex longer than this is counted in ``too_long``, not delivered)
CLOCK_MONOTONIC = 1
BUCKETS_PER_S = 4  # the frame clock's base: the lowest of the last 2 buckets (see the callback)

# One reflex table: the windows, the channels, the answers of the two steps, and the answer's velocity per input
# velocity. An answer is a pitch, or -1: no answer from the callback (the engine decides).
RX_T0, RX_MID, RX_END, RX_PARTNER, RX_INPUT_CH, RX_ANSWERS = 0, 1, 2, 3, 4, 5
RX_VELOCITY = RX_ANSWERS + 2 * 128
REFLEX_WORDS = RX_VELOCITY + 128
RX_PER_CYCLE = 16  # answers one cycle can hold (more note-ons in one cycle are left to the engine)
RX_SCAN = 256  # output-ring entries looked through for a waiting partner note (more: the callback declines)
# ``dropped_on`` values: the next note-off of that (channel, pitch) is swallowed, because its note-on was dropped or
# revoked (DROPPED: the scheduler still believes the note sounds, so the reflex keeps off that channel until the
# off has come), or because the callback ended the note itself at its cause's release (ENDED_HERE).
DROPPED, ENDED_HERE = 1, 2
# The emitted ring's "sent" of a message that did not go out: dropped as late (or the cycle's buffer was full),
# revoked, or a note-off swallowed (its note never sounded, or the callback ended it already).
SENT_DROPPED, SENT_REVOKED, SENT_SWALLOWED = -1, -2, -3


@intrinsic
def _ptr(typingctx, addr):
    """An integer address as a ``void*`` (for ``numba.carray``)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(addr), codegen


def compile_process(fns: dict):
    """The process callback, ``int process(jack_nframes_t nframes, void *arg)``; ``arg`` is the control block.
    ``fns``: ctypes function pointers of libjack/libc (``jack_native._bind``), every pointer a 64-bit integer."""
    port_get_buffer = fns["jack_port_get_buffer"]
    event_count = fns["jack_midi_get_event_count"]
    event_get = fns["jack_midi_event_get"]
    clear_buffer = fns["jack_midi_clear_buffer"]
    event_write = fns["jack_midi_event_write"]
    last_frame_time = fns["jack_last_frame_time"]
    clock_gettime = fns["clock_gettime"]
    sem_post = fns["sem_post"]
    port_connected = fns["jack_port_connected"]
    mask = RING - 1

    @numba.cfunc(types.int32(types.uint32, types.voidptr), nopython=True)
    def process(nframes, arg):
        ctl = numba.carray(arg, (N_CTL,), np.int64)
        client = np.uint64(ctl[C_CLIENT])
        ts = numba.carray(_ptr(ctl[C_TIMESPEC]), (2,), np.int64)
        clock_gettime(CLOCK_MONOTONIC, np.uint64(ctl[C_TIMESPEC]))
        entry_ns = ts[0] * 1_000_000_000 + ts[1]
        first32 = np.int64(last_frame_time(client))
        rate = ctl[C_RATE]
        if ctl[C_CYCLES] == 0:
            ctl[C_PREV32] = first32
            ctl[C_FRAME0] = first32  # JACK's frame at base0: ties the frame clock to every client's frames
        elif ((first32 - ctl[C_PREV32]) & 0xFFFFFFFF) != nframes:
            ctl[C_FRAME_JUMPS] += 1  # a cycle not run, or this one run so late that it read the next one's frame
        ext = ctl[C_EXT_FRAME] + ((first32 - ctl[C_PREV32]) & 0xFFFFFFFF)  # frames since the first cycle
        ctl[C_EXT_FRAME] = ext
        ctl[C_PREV32] = first32
        # Where the frames are on the monotonic clock: wall_base + frames / rate. A cycle's callback never starts
        # before its frame's time, so wall_base is the lowest (entry - frames / rate) of the last 0.25-0.5 s (two
        # buckets): late wake-ups never move it (one on-time cycle per bucket is enough), and it follows a sound
        # card's drift or a server that falls behind (or loses frames) within half a second. Python reads it for
        # ``now_ns``; every time the callback writes or reads is on the *frame clock*, base0 + frames / rate, with
        # base0 the first wall_base, so stamps and due times stay frame-exact while wall_base moves.
        frames_ns = np.int64(np.float64(ext) * 1e9 / rate)
        cand = entry_ns - frames_ns
        if ctl[C_CYCLES] == 0:
            ctl[C_MIN_CUR] = cand
            ctl[C_MIN_PREV] = cand
            ctl[C_BUCKET_START] = ext
        elif ext - ctl[C_BUCKET_START] >= rate // BUCKETS_PER_S:
            ctl[C_MIN_PREV] = ctl[C_MIN_CUR]
            ctl[C_MIN_CUR] = cand
            ctl[C_BUCKET_START] = ext
        else:
            ctl[C_MIN_CUR] = min(ctl[C_MIN_CUR], cand)
        wall_base = min(ctl[C_MIN_CUR], ctl[C_MIN_PREV])
        if ctl[C_CYCLES] == 0:
            ctl[C_BASE0] = wall_base
        ctl[C_WALL_BASE] = wall_base  # published after base0: a reader that sees it sees base0 too
        base = ctl[C_BASE0]
        cycle_ns = base + frames_ns
        ctl[C_CYCLES] += 1

        dropped_on = numba.carray(_ptr(ctl[C_DROPPED_ON]), (16 * 128,), np.uint8)
        sounding = numba.carray(_ptr(ctl[C_SOUNDING]), (16 * 128,), np.uint8)
        rx_stage = numba.carray(_ptr(ctl[C_RX_STAGE]), (RX_PER_CYCLE, 3), np.int64)  # offset, packed, input slot
        rx_n = 0
        in_w = ctl[C_IN_W]  # published at the end of the cycle, after the reflex ring (module docstring)
        if ctl[C_IN_PORT] != 0:
            buf = port_get_buffer(np.uint64(ctl[C_IN_PORT]), nframes)
            ev = numba.carray(_ptr(ctl[C_EVENT]), (3,), np.int64)
            meta = numba.carray(_ptr(ctl[C_IN_META]), (RING, 3), np.int64)
            data = numba.carray(_ptr(ctl[C_IN_DATA]), (RING, IN_BYTES), np.uint8)
            tables = numba.carray(_ptr(ctl[C_REFLEX]), (2, REFLEX_WORDS), np.int64)
            out_ring = numba.carray(_ptr(ctl[C_OUT_RING]), (RING, 2), np.int64)
            for i in range(event_count(buf)):
                if event_get(np.uint64(ctl[C_EVENT]), buf, np.uint32(i)) != 0:
                    continue
                frame = ext + (ev[0] & 0xFFFFFFFF)
                size = ev[1]
                if size > IN_BYTES or size <= 0:
                    ctl[C_IN_TOO_LONG] += 1
                    continue
                if in_w - ctl[C_IN_R] >= RING:
                    ctl[C_IN_OVERFLOW] += 1
                    continue
                slot = in_w & mask
                src = numba.carray(_ptr(ev[2]), (size,), np.uint8)
                for k in range(size):
                    data[slot, k] = src[k]
                stamp = base + np.int64(np.float64(frame) * 1e9 / rate)
                meta[slot, 0] = stamp
                meta[slot, 1] = size
                meta[slot, 2] = (first32 + (ev[0] & 0xFFFFFFFF)) & 0xFFFFFFFF
                in_w += 1
                if size == 1 and ctl[C_FOLLOW_TRANSPORT] != 0:  # the transport (module docstring, "Repairs")
                    if src[0] == 0xFC:
                        ctl[C_HUSH_UNTIL] = np.int64(1) << 62
                        ctl[C_HUSH_FROM] = stamp
                    elif (src[0] == 0xFA or src[0] == 0xFB) and ctl[C_HUSH_FROM] >= 0:
                        ctl[C_HUSH_UNTIL] = stamp
                    continue
                # ---- the reflex: end an answer at its cause's release, answer a note-on (module docstring) ----
                if size != 3 or (src[0] & 0xF0) not in (0x80, 0x90):
                    continue
                if (src[0] & 0xF0) == 0x80 or src[2] == 0:
                    hold = ctl[C_RX_HOLD]
                    held = hold & 0xFFF
                    if hold >= 0 and (hold >> 12) == src[1] and (src[0] & 0x0F) != (held >> 7) and rx_n < RX_PER_CYCLE:
                        ctl[C_RX_HOLD] = -1
                        if sounding[held] != 0:
                            rx_stage[rx_n, 0] = ev[0] & 0xFFFFFFFF
                            rx_stage[rx_n, 1] = 3 | ((0x80 | (held >> 7)) << 8) | ((held & 0x7F) << 16)
                            rx_stage[rx_n, 2] = -1  # not an answer: nothing to report
                            rx_n += 1
                            sounding[held] = 0
                            dropped_on[held] = ENDED_HERE
                    continue
                if ctl[C_RX_ON] == 0:
                    continue
                t = tables[ctl[C_RX_ACTIVE] & 1]
                partner = t[RX_PARTNER]
                ch = src[0] & 0x0F
                if stamp < t[RX_T0] or stamp >= t[RX_END] or ch == partner or (
                        t[RX_INPUT_CH] >= 0 and ch != t[RX_INPUT_CH]):
                    continue
                answer = t[RX_ANSWERS + (0 if stamp < t[RX_MID] else 128) + src[1]]
                if answer < 0 or answer > 127:
                    continue
                quiet = rx_n < RX_PER_CYCLE
                for p in range(128):
                    if sounding[partner * 128 + p] != 0 or dropped_on[partner * 128 + p] == DROPPED:
                        quiet = False
                r0, w0 = ctl[C_OUT_R], ctl[C_OUT_W]
                if w0 - r0 > RX_SCAN:
                    quiet = False
                else:
                    for r in range(r0, w0):
                        pk = out_ring[r & mask, 1]
                        st = (pk >> 8) & 0xFF
                        k = ((st & 0x0F) << 7) | ((pk >> 16) & 0x7F)
                        waiting_off = (st & 0xF0) == 0x80 or ((st & 0xF0) == 0x90 and ((pk >> 24) & 0x7F) == 0)
                        if st < 0xF0 and (st & 0x0F) == partner and not (waiting_off and dropped_on[k] == ENDED_HERE):
                            quiet = False  # (an off the callback will swallow changes nothing on the wire)
                if not quiet:
                    ctl[C_RX_DECLINED] += 1
                    continue
                vel = max(1, min(127, t[RX_VELOCITY + src[2]]))
                rx_stage[rx_n, 0] = ev[0] & 0xFFFFFFFF
                rx_stage[rx_n, 1] = 3 | ((0x90 | partner) << 8) | (answer << 16) | (vel << 24)
                rx_stage[rx_n, 2] = in_w - 1
                rx_n += 1
                sounding[partner * 128 + answer] = 1  # a second note-on in this cycle finds the partner busy
                ctl[C_RX_HOLD] = (np.int64(src[1]) << 12) | (partner << 7) | answer

        rx_i = 0
        if ctl[C_OUT_PORT] != 0:
            obuf = port_get_buffer(np.uint64(ctl[C_OUT_PORT]), nframes)
            clear_buffer(obuf)
            ring = numba.carray(_ptr(ctl[C_OUT_RING]), (RING, 2), np.int64)
            emit = numba.carray(_ptr(ctl[C_EMIT_RING]), (RING, 2), np.int64)
            rx_ring = numba.carray(_ptr(ctl[C_RX_RING]), (RING, 4), np.int64)
            meta = numba.carray(_ptr(ctl[C_IN_META]), (RING, 3), np.int64)
            data = numba.carray(_ptr(ctl[C_IN_DATA]), (RING, IN_BYTES), np.uint8)
            stage = numba.carray(_ptr(ctl[C_STAGE]), (8,), np.uint8)
            revoke_upto = numba.carray(_ptr(ctl[C_REVOKE_UPTO]), (16,), np.int64)
            revoke_from = numba.carray(_ptr(ctl[C_REVOKE_FROM]), (16,), np.int64)
            missed = numba.carray(_ptr(ctl[C_MISSED]), (16 * 128,), np.uint8)
            offq = numba.carray(_ptr(ctl[C_OFFQ]), (OFFQ, 2), np.int64)  # (frame due, key)
            resend = ctl[C_RESEND_FRAMES]
            # ---- repairs, at the cycle's first frame (module docstring) ----
            while ctl[C_OFFQ_R] < ctl[C_OFFQ_W] and offq[ctl[C_OFFQ_R] & (OFFQ - 1), 0] <= ext:
                k = offq[ctl[C_OFFQ_R] & (OFFQ - 1), 1]  # a note-off sent before, once more (a receiver may have lost it)
                ctl[C_OFFQ_R] += 1
                if sounding[k] == 0:
                    stage[0] = 0x80 | (k >> 7)
                    stage[1] = k & 0x7F
                    stage[2] = 0
                    if event_write(obuf, np.uint32(0), np.uint64(ctl[C_STAGE]), np.uint64(3)) == 0:
                        ctl[C_RESENT_OFFS] += 1
            peers = np.int64(port_connected(np.uint64(ctl[C_OUT_PORT])))
            if peers < ctl[C_PEERS]:  # a peer went (unplugged by hand, or its client died): it misses what sounds
                ctl[C_PEER_DROPS] += 1
                for k in range(16 * 128):
                    if sounding[k] != 0:
                        missed[k] = 1
            elif peers > ctl[C_PEERS]:  # a peer came: end what it (or a synth that outlived a restart) still holds
                for k in range(16 * 128):
                    if missed[k] != 0:
                        missed[k] = 0
                        if sounding[k] == 0:
                            stage[0] = 0x80 | (k >> 7)
                            stage[1] = k & 0x7F
                            stage[2] = 0
                            if event_write(obuf, np.uint32(0), np.uint64(ctl[C_STAGE]), np.uint64(3)) == 0:
                                ctl[C_MISSED_OFFS] += 1
                                qw = ctl[C_OFFQ_W]  # once more next cycle: a new link may not carry data yet
                                if qw - ctl[C_OFFQ_R] < OFFQ:
                                    offq[qw & (OFFQ - 1), 0] = ext + nframes
                                    offq[qw & (OFFQ - 1), 1] = k
                                    ctl[C_OFFQ_W] = qw + 1
            ctl[C_PEERS] = peers
            last = 0
            period_ns = np.int64(nframes) * 1_000_000_000 // rate  # a message due now can only go next cycle
            while True:
                # The next message of the ring that belongs to this cycle (d: its frame offset), if any.
                d = np.int64(nframes)
                if ctl[C_OUT_R] < ctl[C_OUT_W]:
                    head = ctl[C_OUT_R] & mask
                    # the first frame at or after its due time, relative to this cycle's first frame
                    d = np.int64(np.ceil(np.float64(ring[head, 0] - base) * rate / 1e9)) - ext
                if rx_i < rx_n and rx_stage[rx_i, 0] <= max(d, np.int64(0)):
                    # a reflex answer goes out before ring messages of later frames (JACK needs rising offsets)
                    packed = rx_stage[rx_i, 1]
                    offset = max(rx_stage[rx_i, 0], last)
                    for k in range(3):
                        stage[k] = (packed >> (8 * (k + 1))) & 0xFF
                    sent = np.int64(-1)
                    key = ((stage[0] & 0x0F) << 7) | stage[1]
                    release = rx_stage[rx_i, 2] < 0
                    if event_write(obuf, np.uint32(offset), np.uint64(ctl[C_STAGE]), np.uint64(3)) != 0:
                        ctl[C_WRITE_FAILED] += 1
                        if release:  # not ended here after all: the engine's own note-off must go out
                            sounding[key] = 1
                            dropped_on[key] = 0
                        else:
                            sounding[key] = 0
                    else:
                        last = offset
                        sent = base + np.int64(np.float64(ext + offset) * 1e9 / rate)
                        ctl[C_RX_RELEASED if release else C_REFLEXES] += 1
                        qw = ctl[C_OFFQ_W]
                        if release and resend > 0 and qw - ctl[C_OFFQ_R] < OFFQ:
                            offq[qw & (OFFQ - 1), 0] = ext + offset + resend
                            offq[qw & (OFFQ - 1), 1] = key
                            ctl[C_OFFQ_W] = qw + 1
                    rw = ctl[C_RX_W]
                    if release:
                        pass
                    elif rw - ctl[C_RX_R] < RING:  # the engine drains it every note-on; full: a dead engine
                        s = rx_stage[rx_i, 2] & mask
                        rx_ring[rw & mask, 0] = meta[s, 0]
                        rx_ring[rw & mask, 1] = data[s, 0] | (np.int64(data[s, 1]) << 8) | (np.int64(data[s, 2]) << 16)
                        rx_ring[rw & mask, 2] = packed
                        rx_ring[rw & mask, 3] = sent
                        ctl[C_RX_W] = rw + 1
                    rx_i += 1
                    continue
                if d >= nframes:
                    break  # nothing more this cycle; a ring message due later waits, and all written after it
                r = ctl[C_OUT_R]
                slot = r & mask
                due_ns = ring[slot, 0]
                packed = ring[slot, 1]
                size = packed & 0xFF
                status = (packed >> 8) & 0xFF
                key = ((status & 0x0F) << 7) | ((packed >> 16) & 0x7F)
                is_on = (status & 0xF0) == 0x90 and size == 3 and ((packed >> 24) & 0x7F) > 0
                is_off = size == 3 and ((status & 0xF0) == 0x80 or ((status & 0xF0) == 0x90 and not is_on))
                sent = np.int64(-1)
                ch = status & 0x0F
                if is_on and r < revoke_upto[ch] and due_ns >= revoke_from[ch]:
                    ctl[C_REVOKED] += 1  # cancelled after it was handed over, before it sounded
                    sent = np.int64(SENT_REVOKED)
                    dropped_on[key] = DROPPED
                elif is_on and 0 <= ctl[C_HUSH_FROM] <= due_ns < ctl[C_HUSH_UNTIL]:
                    ctl[C_HUSHED] += 1  # due after a transport Stop the engine had not heard yet
                    sent = np.int64(SENT_REVOKED)
                    dropped_on[key] = DROPPED
                elif d < 0 and is_on and cycle_ns - due_ns > period_ns + (
                        ctl[C_DROP_LATE_NS] if (packed >> LATE_OK_SHIFT) == 0 else (packed >> LATE_OK_SHIFT) * 1000):
                    ctl[C_LATE_DROPPED] += 1
                    dropped_on[key] = DROPPED
                elif is_off and dropped_on[key] != 0:
                    dropped_on[key] = 0
                    ctl[C_SWALLOWED] += 1
                    sent = np.int64(SENT_SWALLOWED)
                elif is_off and sounding[key] == 0:  # nothing to end: the wire carries only note-offs that end
                    ctl[C_SWALLOWED] += 1  # a note (a second one from the engine, e.g. a cap then a silence)
                    sent = np.int64(SENT_SWALLOWED)
                else:
                    offset = max(d, last)
                    if is_on and sounding[key] != 0:  # never a second note-on for a sounding pitch: end it first
                        stage[0] = 0x80 | ch
                        stage[1] = key & 0x7F
                        stage[2] = 0
                        if event_write(obuf, np.uint32(offset), np.uint64(ctl[C_STAGE]), np.uint64(3)) == 0:
                            ctl[C_RESTRUCK] += 1
                            last = offset
                    for k in range(size):
                        stage[k] = (packed >> (8 * (k + 1))) & 0xFF
                    if event_write(obuf, np.uint32(offset), np.uint64(ctl[C_STAGE]), np.uint64(size)) != 0:
                        ctl[C_WRITE_FAILED] += 1  # the cycle's buffer is full: not sent
                    else:
                        last = offset
                        if is_on:
                            dropped_on[key] = 0
                            sounding[key] = 1
                        elif is_off:
                            sounding[key] = 0
                            qw = ctl[C_OFFQ_W]
                            if resend > 0 and qw - ctl[C_OFFQ_R] < OFFQ:
                                offq[qw & (OFFQ - 1), 0] = ext + offset + resend
                                offq[qw & (OFFQ - 1), 1] = key
                                ctl[C_OFFQ_W] = qw + 1
                        hold = ctl[C_RX_HOLD]
                        if hold >= 0 and size == 3 and ch == ((hold & 0xFFF) >> 7) and (
                                (is_on and key != (hold & 0xFFF)) or (is_off and key == (hold & 0xFFF))):
                            ctl[C_RX_HOLD] = -1  # another partner note went out, or this one ended: not ours to end
                        sent = base + np.int64(np.float64(ext + offset) * 1e9 / rate)
                        if d < 0:
                            ctl[C_LATE] += 1
                ew = ctl[C_EMIT_W]
                if ew - ctl[C_EMIT_R] < RING:
                    emit[ew & mask, 0] = due_ns
                    emit[ew & mask, 1] = sent
                    ctl[C_EMIT_W] = ew + 1
                else:
                    ctl[C_EMIT_OVERFLOW] += 1
                ctl[C_OUT_R] = r + 1
        while rx_i < rx_n:  # no output port: nothing staged can go out
            k = ((rx_stage[rx_i, 1] >> 8) & 0x0F) * 128 + ((rx_stage[rx_i, 1] >> 16) & 0x7F)
            sounding[k] = 1 if rx_stage[rx_i, 2] < 0 else 0
            if rx_stage[rx_i, 2] < 0:
                dropped_on[k] = 0
            rx_i += 1
        if in_w != ctl[C_IN_W]:
            ctl[C_IN_W] = in_w
            sem_post(np.uint64(ctl[C_SEM]))
        return 0

    return process
