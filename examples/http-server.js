// An unmodified HTTP server. Through the layer, intercepted clients arrive over shared memory
// and curl over the kernel, at the same time.
//   node --require ./preload examples/http-server.js [port]
'use strict';
const http = require('node:http');
const port = Number(process.argv[2] || 8080);
http
  .createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from ${process.pid}, you are ${req.socket.remoteAddress}:${req.socket.remotePort}\n`);
  })
  .listen(port, '127.0.0.1', () => console.log(`http on http://127.0.0.1:${port}/`));
