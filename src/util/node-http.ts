// node:http, loaded the CommonJS way. An ES import of node:http (even of one name) reads every
// export of the module, and three of them (WebSocket, CloseEvent, MessageEvent) are getters that
// load Node's bundled undici: ~0.8 MB of source compiled into every process that imports it, which
// a gateway's controller never uses. require() returns the module object and touches no getter.
// Everything in src that needs node:http takes it from here (test/daemon/controller-footprint.test.ts).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const http: typeof import('node:http') = require('node:http');
