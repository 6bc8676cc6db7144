/**
 * Numbers as people read them in a progress line: short, fixed-ish width, decimal units
 * (as `docker pull` and download tools show them), so a line does not jump as it updates.
 */

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

/** `999 B`, `1.2 kB`, `45.6 MB`, `1.23 GB`: three significant digits above a kilobyte. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1000) return `${Math.max(0, Math.round(Number.isFinite(bytes) ? bytes : 0))} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 999.5 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** A rate in bytes per second, `12.3 MB/s`; `-` while there is no estimate yet. */
export function formatRate(bytesPerSecond: number | undefined): string {
  if (bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return '-';
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** `0.4s`, `12s`, `3m05s`, `1h02m`: seconds below a minute keep one decimal below ten. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** `sha256:0123456789ab`: enough of a digest to tell layers apart on one line. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  return colon === -1 ? digest.slice(0, 12) : digest.slice(0, colon + 1 + 12);
}
