/** `[#####.....]  42%`: how much of a run is done (0..1), for the live lines of the CLI. */
export function progressBar(done: number, width = 24): string {
  const filled = Math.max(0, Math.min(width, Math.round(done * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(100 * Math.min(1, done)).toFixed(0).padStart(3)}%`;
}
