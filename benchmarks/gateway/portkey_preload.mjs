// Loaded with `node --import` before Portkey's gateway (a peer in the benchmark, not vmx code).
//
// 1. Portkey 1.15.2 answers a streamed request with a 500 on Node 20: it appends headers to
//    the upstream fetch Response, whose headers undici made immutable ("TypeError: immutable",
//    Portkey-AI/gateway#1389 and #1550).  Their proposed fix re-wraps the streamed response;
//    this does the same around global fetch, so the body is still relayed as a stream.
// 2. Its server listens on every interface; the benchmark binds it to loopback.
import http from "node:http";

const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await upstreamFetch(...args);
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) return response;
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};

const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, host, ...rest) {
  if (typeof port === "number" && (host === undefined || typeof host === "function")) {
    return listen.call(this, port, "127.0.0.1", ...(host === undefined ? rest : [host, ...rest]));
  }
  return listen.call(this, port, host, ...rest);
};
