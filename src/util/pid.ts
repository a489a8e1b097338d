// Whether a process id names a live process on this host, for the locks and staging folders that
// record their owner's pid. Signal 0 checks without sending anything.

/** Whether process `pid` exists on this host (EPERM: it does, and is another user's). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
