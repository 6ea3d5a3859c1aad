"""Lost-peer watchdog of multi-process runs: one dead process stops the rest.

When a process of a ``jax.distributed`` run dies (killed, out of memory, its
host lost), the others block in the next collective. JAX's own coordination
service notices only after its heartbeat timeout and then aborts the process
with a C++ crash report. `Watchdog` runs a daemon thread in each process
that publishes a heartbeat counter in the coordination service's key-value
store every ``interval_s`` and reads everyone's. A peer whose counter has not
moved for ``timeout_s`` seconds (or, for process 0, a coordinator that
cannot be reached for that long) is reported as lost: one line naming it on
stderr, then ``os._exit(EXIT_PEER_LOST)`` (a blocked collective cannot be
interrupted, and a normal exit would wait for the dead peer at shutdown).
Rerunning the same command on every host resumes from the last complete
checkpoint.

A process that finishes normally calls `Watchdog.stop`, which marks it done
so that its silence afterwards is not taken for a loss.
"""

from __future__ import annotations

import os
import sys
import threading
import time

# EX_TEMPFAIL: the run can be retried as it is.
EXIT_PEER_LOST = 75
_ALIVE = 'gcjax_peers/alive/'
_DONE = 'gcjax_peers/done/'


def _client():
  """The jax.distributed client, or None in a single-process run."""
  from jax._src import distributed
  return distributed.global_state.client


def lost_message(lost: list[int], me: int, n: int, timeout_s: float,
                 hint: str = '') -> str:
  """The line printed when ``lost`` processes stopped answering."""
  who = ', '.join(
      f'process {p}{" (the coordinator)" if p == 0 else ""}' for p in lost)
  return (f'gcjax: error: lost {who} of {n}: no heartbeat for '
          f'{timeout_s:g} s (killed, crashed or unreachable). Process {me} '
          f'stops (exit {EXIT_PEER_LOST}). Rerun the same command on every '
          f'process to resume from the last complete checkpoint{hint}.')


class Watchdog:
  """Heartbeats through the coordination service; exits on a lost peer.

  Args:
    timeout_s: seconds without a heartbeat after which a peer is lost.
    hint: appended to the lost-peer line (e.g. ' in runs/x/checkpoints').
    interval_s: heartbeat period (default ``timeout_s / 10``, 0.2-5 s).
  """

  def __init__(self, timeout_s: float, hint: str = '',
               interval_s: float | None = None):
    import jax
    if timeout_s <= 0:
      raise ValueError(f'timeout_s must be > 0, got {timeout_s}')
    self.timeout_s = float(timeout_s)
    self.interval_s = interval_s or min(5.0, max(0.2, timeout_s / 10))
    self.hint = hint
    self.me, self.n = jax.process_index(), jax.process_count()
    self._client = _client() if self.n > 1 else None
    self._stop = threading.Event()
    self._thread = None

  def start(self) -> Watchdog:
    if self._client is not None:
      self._thread = threading.Thread(target=self._run, daemon=True,
                                      name='gcjax-peer-watchdog')
      self._thread.start()
    return self

  def stop(self) -> None:
    """Marks this process done and ends the heartbeat thread."""
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    try:
      self._client.key_value_set(f'{_DONE}{self.me}', '1',
                                 allow_overwrite=True)
    except Exception:  # noqa: BLE001 - the coordinator may be gone already.
      pass

  def settle(self) -> None:
    """Waits up to the timeout for the heartbeat check to name a lost peer.

    Call it when a collective failed with a runtime error: when a peer
    dies, JAX raises in the survivors at once, with an error whose message
    cannot even be formatted while the peer is missing. If a peer is lost,
    the watchdog ends the process with its line during the wait;
    otherwise this returns (single-process runs: at once).
    """
    if self._thread is not None:
      self._thread.join(self.timeout_s + 3 * self.interval_s)

  def _lost(self, lost: list[int]) -> None:
    print(lost_message(lost, self.me, self.n, self.timeout_s, self.hint),
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_PEER_LOST)

  def _run(self) -> None:
    start = time.monotonic()
    seen: dict[int, tuple[str, float]] = {
        p: ('', start) for p in range(self.n) if p != self.me}
    last_ok = start
    beat = 0
    while not self._stop.wait(self.interval_s):
      now = time.monotonic()
      beat += 1
      try:
        self._client.key_value_set(f'{_ALIVE}{self.me}', str(beat),
                                   allow_overwrite=True)
        values = dict(self._client.key_value_dir_get('gcjax_peers/'))
        last_ok = now
      except Exception:  # noqa: BLE001 - the coordinator is unreachable.
        if self.me != 0 and now - last_ok > self.timeout_s:
          self._lost([0])
        continue
      lost = []
      for p, (value, when) in seen.items():
        if f'{_DONE}{p}' in values:
          continue
        got = values.get(f'{_ALIVE}{p}', '')
        if got != value:
          seen[p] = (got, now)
        elif now - when > self.timeout_s:
          lost.append(p)
      if lost:
        self._lost(lost)
