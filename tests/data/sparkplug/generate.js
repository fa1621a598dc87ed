// generate.js - Sparkplug B fixtures for sluice's tests, made by the Eclipse Tahu
// JavaScript library (npm package sparkplug-payload).
//
// Regenerate (the .bin files are checked in, so tests never need npm):
//   d=$(mktemp -d) && (cd "$d" && npm install sparkplug-payload@1.0.3) &&
//   NODE_PATH="$d/node_modules" node tests/data/sparkplug/generate.js tests/data/sparkplug
//
// Tahu's encodePayload does not know the Sparkplug 3.0 array datatypes nor
// datatypes past them, so those metrics are built with the library's own protobuf
// schema (sparkplugPayloadProto) and bytes packed as the 3.0 specification says
// (little-endian; BooleanArray: u32 count, then bits MSB first; StringArray:
// NUL-terminated UTF-8).
'use strict';
const fs = require('fs');
const path = require('path');
const sparkplug = require('sparkplug-payload').get('spBv1.0');
const proto = require('sparkplug-payload/lib/sparkplugPayloadProto').org.eclipse.tahu.protobuf;

const out = process.argv[2] || __dirname;
const T = 1700000000000;   // 2023-11-14T22:13:20Z
const write = (name, bytes) => fs.writeFileSync(path.join(out, name + '.bin'), Buffer.from(bytes));

// Every scalar datatype Tahu encodes, with aliases, on an NBIRTH.
write('nbirth', sparkplug.encodePayload({
    timestamp: T, seq: 0,
    metrics: [
        { name: 'bdSeq', type: 'UInt64', value: 3, alias: 0 },
        { name: 'Node Control/Rebirth', type: 'Boolean', value: false, alias: 1 },
        { name: 'int8', type: 'Int8', value: -8, alias: 2 },
        { name: 'int16', type: 'Int16', value: -16000, alias: 3 },
        { name: 'int32', type: 'Int32', value: -2000000000, alias: 4 },
        { name: 'int64', type: 'Int64', value: -5000000000, alias: 5 },
        { name: 'uint8', type: 'UInt8', value: 200, alias: 6 },
        { name: 'uint16', type: 'UInt16', value: 60000, alias: 7 },
        { name: 'uint32', type: 'UInt32', value: 4000000000, alias: 8 },
        { name: 'uint64', type: 'UInt64', value: 9000000000, alias: 9 },
        { name: 'float', type: 'Float', value: 0.1, alias: 10 },
        { name: 'double', type: 'Double', value: 2.718281828459045, alias: 11 },
        { name: 'boolean', type: 'Boolean', value: true, alias: 12 },
        { name: 'string', type: 'String', value: 'h\u00e9llo "w"', alias: 13 },
        { name: 'datetime', type: 'DateTime', value: T - 1000, alias: 14 },
        { name: 'text', type: 'Text', value: 'line1\nline2', alias: 15 },
        { name: 'uuid', type: 'UUID', value: '123e4567-e89b-12d3-a456-426614174000', alias: 16 },
        { name: 'bytes', type: 'Bytes', value: Buffer.from([0, 1, 2, 250]), alias: 17 },
        { name: 'file', type: 'File', value: Buffer.from('abc'), alias: 18,
          metadata: { fileName: 'a.txt', fileType: 'txt', size: 3, md5: '900150983cd24fb0d6963f7d28e17f72' } },
        { name: 'Properties/temp', type: 'Double', value: 21.5, alias: 19,
          properties: { engUnit: { type: 'String', value: 'C' }, engHigh: { type: 'Int32', value: 100 },
                        quality: { type: 'Int32', value: null } } },
        { name: 'null_int', type: 'Int32', value: null, alias: 20 },
        { name: 'historical', type: 'Int32', value: 7, alias: 21, timestamp: T - 5000,
          isHistorical: true, isTransient: true },
    ],
}));

// NDATA by alias only (the normal case): names and datatypes come from the NBIRTH.
write('ndata', sparkplug.encodePayload({
    timestamp: T + 1000, seq: 1,
    metrics: [
        { alias: 4, type: 'Int32', value: 42 },
        { alias: 10, type: 'Float', value: 1.5 },
        { alias: 13, type: 'String', value: 'changed' },
    ],
}));

// NDATA whose seq skips 2..4: a gap.
write('ndata_gap', sparkplug.encodePayload({
    timestamp: T + 2000, seq: 5,
    metrics: [{ alias: 4, type: 'Int32', value: 43 }],
}));

// NDATA with an alias the NBIRTH did not define.
write('ndata_unknown_alias', sparkplug.encodePayload({
    timestamp: T + 2500, seq: 2,
    metrics: [{ alias: 999, type: 'Int32', value: 1 }],
}));

write('ndeath', sparkplug.encodePayload({
    timestamp: T + 9000,
    metrics: [{ name: 'bdSeq', type: 'UInt64', value: 3 }],
}));

// A host asks the edge node to publish a new NBIRTH.
write('ncmd_rebirth', sparkplug.encodePayload({
    timestamp: T + 3000,
    metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }],
}));

// DBIRTH with a DataSet and a Template (definition members and parameters).
write('dbirth', sparkplug.encodePayload({
    timestamp: T + 100, seq: 1,
    metrics: [
        { name: 'Inputs/A', type: 'Boolean', value: false, alias: 100 },
        { name: 'Inputs/B', type: 'Int16', value: -3, alias: 101 },
        { name: 'Outputs/Temp', type: 'Float', value: 20.25, alias: 102 },
        { name: 'Table', type: 'DataSet', alias: 103, value: {
            numOfColumns: 3, columns: ['id', 'label', 'ok'], types: ['Int32', 'String', 'Boolean'],
            rows: [[1, 'one', true], [2, 'two', false]] } },
        { name: 'Motor', type: 'Template', alias: 104, value: {
            version: 'v1', templateRef: 'MotorType', isDefinition: false,
            metrics: [
                { name: 'RPM', type: 'Int32', value: 1500 },
                { name: 'Running', type: 'Boolean', value: true },
            ],
            parameters: [{ name: 'Manufacturer', type: 'String', value: 'ACME' }] } },
    ],
}));

// DDATA by alias, after the DBIRTH (seq 2 follows the DBIRTH's 1).
write('ddata', sparkplug.encodePayload({
    timestamp: T + 2000, seq: 2,
    metrics: [
        { alias: 100, type: 'Boolean', value: true },
        { alias: 102, type: 'Float', value: 22.75 },
    ],
}));

write('ddeath', sparkplug.encodePayload({ timestamp: T + 8000, seq: 3 }));

write('dcmd', sparkplug.encodePayload({
    timestamp: T + 3500,
    metrics: [{ name: 'Outputs/Temp', type: 'Float', value: 30 }],
}));

// Sparkplug 3.0 arrays and a datatype sluice does not know (kept as base64).
function le(width, values, put) {
    const b = Buffer.alloc(width * values.length);
    values.forEach((v, i) => put(b, v, i * width));
    return b;
}
const boolArray = (vals) => {
    const b = Buffer.alloc(4 + Math.ceil(vals.length / 8));
    b.writeUInt32LE(vals.length, 0);
    vals.forEach((v, i) => { if (v) b[4 + (i >> 3)] |= 0x80 >> (i & 7); });
    return b;
};
const arrays = [
    ['Int8Array', 22, le(1, [-1, 2], (b, v, o) => b.writeInt8(v, o))],
    ['Int16Array', 23, le(2, [-300, 300], (b, v, o) => b.writeInt16LE(v, o))],
    ['Int32Array', 24, le(4, [-70000, 70000], (b, v, o) => b.writeInt32LE(v, o))],
    ['Int64Array', 25, le(8, [-5000000000n, 5000000000n], (b, v, o) => b.writeBigInt64LE(v, o))],
    ['UInt8Array', 26, le(1, [1, 255], (b, v, o) => b.writeUInt8(v, o))],
    ['UInt16Array', 27, le(2, [1, 65535], (b, v, o) => b.writeUInt16LE(v, o))],
    ['UInt32Array', 28, le(4, [1, 4294967295], (b, v, o) => b.writeUInt32LE(v, o))],
    ['UInt64Array', 29, le(8, [1n, 18446744073709551615n], (b, v, o) => b.writeBigUInt64LE(v, o))],
    ['FloatArray', 30, le(4, [1.5, -0.25], (b, v, o) => b.writeFloatLE(v, o))],
    ['DoubleArray', 31, le(8, [3.25, -1e300], (b, v, o) => b.writeDoubleLE(v, o))],
    ['BooleanArray', 32, boolArray([true, false, true, true, false, false, false, false, true])],
    ['StringArray', 33, Buffer.from('ab\u0000\u00e9\u0000\u0000', 'utf8')],
    ['DateTimeArray', 34, le(8, [BigInt(T), BigInt(T + 1)], (b, v, o) => b.writeBigInt64LE(v, o))],
];
const arrayMetrics = arrays.map(([name, dt, bytes], i) =>
    ({ name, alias: 200 + i, datatype: dt, bytesValue: bytes }));
arrayMetrics.push({ name: 'future', alias: 300, datatype: 99, bytesValue: Buffer.from([1, 2, 3]) });
arrayMetrics.push({ name: 'bad_int32_array', alias: 301, datatype: 24, bytesValue: Buffer.from([1, 2, 3]) });
write('nbirth_arrays', proto.Payload.encode(proto.Payload.create({
    timestamp: T, seq: 0, metrics: arrayMetrics.map((m) => proto.Payload.Metric.create(m)),
})).finish());

// Decoding check: everything above is a well-formed Payload. (Not Tahu's own
// decodePayload: 1.0.3 cannot read back an Int32 DataSet column it wrote.)
for (const f of fs.readdirSync(out).filter((n) => n.endsWith('.bin')))
    proto.Payload.decode(fs.readFileSync(path.join(out, f)));
