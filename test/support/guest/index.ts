export { CpioWriter } from './cpio.js';
export { type GuestImage, type GuestImageOptions, SCRIPT_EXIT_MARKER, buildGuestImage } from './guest-image.js';
export { type GuestRun, type GuestRunOptions, resultLines, runGuest } from './run-guest.js';
