/** Every hostile case against virtio-vsock (our VsockHost as the host side, an echo listener as the other connection). */
import { HostileDriver } from '../../src/index.js';
import { describeHostile } from './hostile-properties.js';

describeHostile('vsock', 'split', async () => HostileDriver.vsock());
describeHostile('vsock', 'packed', async () => HostileDriver.vsock());
