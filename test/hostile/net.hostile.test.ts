/** Every hostile case against virtio-net (2 queue pairs and a controlq, a peer NIC as the far end). */
import { HostileDriver } from '../../src/index.js';
import { describeHostile } from './hostile-properties.js';

describeHostile('net', 'split', () => HostileDriver.net());
describeHostile('net', 'packed', () => HostileDriver.net());
