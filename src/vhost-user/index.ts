export { VhostUserServer, type VhostUserServerOptions, type VhostUserDeviceBase, type VhostUserDisconnect, type VhostUserTrustOptions, type VhostUserNotifyOptions, type VhostUserThreadOptions, type RingThreads } from './server.js';
export type { SessionSummary } from './session.js';
export { serveVhostUserNet, serveVhostUserVsock, type VhostUserNetOptions, type VhostUserVsockOptions } from './devices.js';
export { VhostUserProtocolError } from './protocol.js';
export { SystemCallError } from '../os/libc.js';
