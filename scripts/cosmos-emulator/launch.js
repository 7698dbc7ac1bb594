#!/usr/bin/env node
// Starts @vercel/cosmosdb-server 1.0.1 with the patches the Azure SDK for Rust needs.
//
// Usage: node launch.js <path to node_modules> --port 8081 [--host 127.0.0.1] [--no-ssl]
//        [--advertise-port N] [--multi-write]   (test-only: advertise a proxy's port;
//        pretend to be a multi-region-write account)
//
// The package is a Node implementation of the Cosmos DB REST API, good enough for the
// SDK once these are fixed (each patch is applied in memory; nothing on disk changes):
//
//  1. Partition-key-range ids are numbers (`"id": 0`); the SDK parses them as strings and
//     fails every item operation with 503 / substatus 20305. We create them as "0".
//  2. Reading a missing document throws inside the handler (`data[path]` of undefined) and
//     answers 500; the service answers 404 NotFound. We answer 404.
//  3. `--no-ssl` still advertises `https://` endpoints in the account metadata, so the SDK
//     switches to TLS after its first call. We advertise the scheme actually served.
//  4. The stock CLI answers `Connection: close` (keep-alive off), so every call pays a new
//     TCP connection (measured 4x slower). We start the server with keep-alive on.
//  5. (Addition, not a bug fix) `GetCurrentTimestamp()` is missing from the query
//     engine; the real service has it (milliseconds since the Unix epoch, server clock).
//     The provider reads the server clock with it, so we add it.
//  6. Writing or querying documents of a container that does not exist (deleted, or
//     the emulator restarted) throws a TypeError and answers 500; the service answers
//     404 NotFound, which tells a client to recreate the container. We answer 404.
//  7. Resource ids (`_rid`) are standard base64, which may contain `/`; the service
//     writes `-` instead (its RIDs appear in URLs). The SDK then fails to parse a
//     container RID ("failed to extract database RID", 500/20020) — only for some
//     counters, so it looked like random failures. We encode and decode as the service.
//
// Not emulated (documented in docs/providers/cosmos.md): TTL expiry of documents, auth
// (any key is accepted), request charges (always 1), consistency levels, regions.
"use strict";

const path = require("path");

const argv = process.argv.slice(2);
const modules = argv[0] ? path.resolve(argv.shift()) : null;
if (!modules) {
  console.error("usage: launch.js <node_modules dir> --port N [--host H] [--no-ssl]");
  process.exit(2);
}
let port = 8081;
let host = "127.0.0.1";
let ssl = true;
let advertisePort = null; // tests: advertise a proxy in front of us instead
let multiWrite = false; // tests: pretend to be a multi-region-write account
while (argv.length) {
  const a = argv.shift();
  if (a === "--port" || a === "-p") port = parseInt(argv.shift(), 10);
  else if (a === "--host") host = argv.shift();
  else if (a === "--no-ssl") ssl = false;
  else if (a === "--advertise-port") advertisePort = parseInt(argv.shift(), 10);
  else if (a === "--multi-write") multiWrite = true;
}

const lib = path.join(modules, "@vercel", "cosmosdb-server", "lib");
const req = (p) => require(path.join(lib, p));

// Patch 1: partition-key-range ids as strings.
const Items = req("account/items.js").default;
const PartitionKeyRanges = req("account/partition-key-ranges.js").default;
PartitionKeyRanges.prototype.create = function create(data) {
  return Items.prototype.create.call(this, { ...data, id: String(data.id) });
};

// Patch 2: a missing document is 404, not 500. Patched before routes.js captures it.
const readDocument = req("handler/read-document.js");
const getPartition = req("utils/get-partition-from-header.js");
const originalRead = readDocument.default;
readDocument.default = (account, request, res, params) => {
  const { dbId, collId, docId } = params;
  const collection = account.database(dbId).collection(collId);
  if (collection.read()) {
    let exists = true;
    try {
      const key = getPartition.parsePartitionKey(getPartition.default(request), docId);
      exists = Boolean(collection.document(docId, key).read());
    } catch (_) {
      exists = true; // let the original handler report a bad header as it does
    }
    if (!exists) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system.",
      };
    }
  }
  return originalRead(account, request, res, params);
};

// Patch 6: document operations on a missing container are 404, not 500.
for (const h of ["create-document", "replace-document", "upsert-document", "delete-document", "patch-document", "query-documents"]) {
  const mod = req(`handler/${h}.js`);
  const original = mod.default;
  mod.default = (account, request, res, params) => {
    const { dbId, collId } = params;
    const db = account.database(dbId);
    if (!db.read() || !db.collection(collId).read()) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Resource Not Found" };
    }
    return original(account, request, res, params);
  };
}

// Patch 7: RIDs in the service's base64 alphabet ('-' for '/').
const ResourceId = req("account/resource-id.js").default;
ResourceId.toBase64String = (buffer) => buffer.toString("base64").replace(/\//g, "-");
ResourceId.fromBase64String = (s) => Buffer.from(String(s).replace(/-/g, "/"), "base64");

// Patch 3: advertise the scheme actually served (and, for tests, another port or a
// multi-region-write account).
const Item = req("account/item.js").default;
const Account = req("account/index.js").default;
const scheme = ssl ? "https" : "http";
Account.prototype.read = function read() {
  const data = Item.prototype.read.call(this);
  const fix = (locs) =>
    (locs || []).map((l) => {
      let url = String(l.databaseAccountEndpoint).replace(/^https?:/, `${scheme}:`);
      if (advertisePort) url = url.replace(/:\d+\/$/, `:${advertisePort}/`);
      return { ...l, databaseAccountEndpoint: url };
    });
  const writable = fix(data.writableLocations);
  if (multiWrite) writable.push({ ...writable[0], name: "East US" });
  return {
    ...data,
    writableLocations: writable,
    readableLocations: fix(data.readableLocations),
    enableMultipleWriteLocations: multiWrite,
  };
};

// Patch 5: GetCurrentTimestamp() in queries (server clock, ms).
const builtins = require(path.join(modules, "@zeit", "cosmosdb-query", "lib", "builtin-functions.js"));
builtins.GETCURRENTTIMESTAMP = (...a) => {
  if (a.length !== 0) throw new Error("The GetCurrentTimestamp function requires 0 argument(s)");
  return Date.now();
};

// Patch 4: keep-alive on.
const server = req("index.js");
const create = ssl ? server.createHttpsServer : server.createHttpServer;
const srv = create({ keepAlive: true });
srv.keepAliveTimeout = 120000;
srv.headersTimeout = 125000;
srv.listen(port, host, () => {
  console.log(`cosmosdb-server (patched) ready at ${scheme}://${host}:${port}/`);
});
const stop = () => srv.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
