// A small zip reader for action archives: Node has no builtin unzip.
//
// Supports what `zip`, `npm pack`-style tools and Python's zipfile produce: stored (0)
// and deflated (8) entries, directories, and symbolic links whose target stays inside the
// extraction directory (node_modules/.bin uses them). Zip64, encryption and multi-disk
// archives are refused with a clear error. Entry names that would escape the target
// directory ("../", absolute paths) are refused too.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** True when `buffer` starts like a zip archive (local header or empty-archive EOCD). */
function isZip(buffer) {
  if (buffer.length < 4) return false;
  const sig = buffer.readUInt32LE(0);
  return sig === LOCAL_SIGNATURE || sig === EOCD_SIGNATURE;
}

function findEndOfCentralDirectory(buffer) {
  // The EOCD record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
  const lowest = Math.max(0, buffer.length - 22 - 0xffff);
  for (let at = buffer.length - 22; at >= lowest; at--) {
    if (buffer.readUInt32LE(at) === EOCD_SIGNATURE) return at;
  }
  throw new Error('not a zip archive (no end of central directory record)');
}

/** Entries of the zip in `buffer`: {name, method, offset, compressedSize, size, mode, flags}. */
function readEntries(buffer) {
  const eocd = findEndOfCentralDirectory(buffer);
  const count = buffer.readUInt16LE(eocd + 10);
  const cdOffset = buffer.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    throw new Error('zip64 archives are not supported');
  }
  if (buffer.readUInt16LE(eocd + 4) !== 0 || buffer.readUInt16LE(eocd + 6) !== 0) {
    throw new Error('multi-disk zip archives are not supported');
  }
  const entries = [];
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > buffer.length || buffer.readUInt32LE(at) !== CENTRAL_SIGNATURE) {
      throw new Error('corrupt zip archive (bad central directory)');
    }
    const madeBy = buffer.readUInt16LE(at + 4) >> 8; // 3 = Unix: high 16 bits of attrs are st_mode
    const nameLength = buffer.readUInt16LE(at + 28);
    const extraLength = buffer.readUInt16LE(at + 30);
    const commentLength = buffer.readUInt16LE(at + 32);
    const attributes = buffer.readUInt32LE(at + 38);
    entries.push({
      flags: buffer.readUInt16LE(at + 8),
      method: buffer.readUInt16LE(at + 10),
      compressedSize: buffer.readUInt32LE(at + 20),
      size: buffer.readUInt32LE(at + 24),
      offset: buffer.readUInt32LE(at + 42),
      name: buffer.toString('utf8', at + 46, at + 46 + nameLength),
      mode: madeBy === 3 ? attributes >>> 16 : 0,
    });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function entryData(buffer, entry) {
  if (entry.flags & 0x1) throw new Error(`encrypted entry ${entry.name} is not supported`);
  const at = entry.offset;
  if (at + 30 > buffer.length || buffer.readUInt32LE(at) !== LOCAL_SIGNATURE) {
    throw new Error(`corrupt zip archive (bad local header for ${entry.name})`);
  }
  // Sizes come from the central directory: local headers may hold zeros (data descriptor).
  const start = at + 30 + buffer.readUInt16LE(at + 26) + buffer.readUInt16LE(at + 28);
  const raw = buffer.subarray(start, start + entry.compressedSize);
  if (raw.length !== entry.compressedSize) throw new Error(`truncated entry ${entry.name}`);
  if (entry.method === 0) return raw;
  if (entry.method === 8) return zlib.inflateRawSync(raw);
  throw new Error(`entry ${entry.name} uses unsupported compression method ${entry.method}`);
}

function safeTarget(root, name) {
  const target = path.resolve(root, name);
  if (name.startsWith('/') || (target !== root && !target.startsWith(root + path.sep))) {
    throw new Error(`zip entry ${JSON.stringify(name)} escapes the action directory`);
  }
  return target;
}

/** Extract the zip in `buffer` into the existing directory `root` (absolute path). */
function extractZip(buffer, root) {
  root = path.resolve(root);
  for (const entry of readEntries(buffer)) {
    const target = safeTarget(root, entry.name);
    if (entry.name.endsWith('/')) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const data = entryData(buffer, entry);
    if ((entry.mode & S_IFMT) === S_IFLNK) {
      const link = data.toString('utf8');
      // A link may only point inside the archive; others are skipped, never followed.
      const resolved = path.resolve(path.dirname(target), link);
      if (!path.isAbsolute(link) && resolved.startsWith(root + path.sep)) {
        fs.symlinkSync(link, target);
      }
      continue;
    }
    if (entry.size !== data.length) throw new Error(`size mismatch for entry ${entry.name}`);
    // Keep the archive's permission bits (executables in node_modules/.bin) but always let
    // the owner read and write; archives made on other systems carry no mode (0).
    const mode = entry.mode & 0o777 ? (entry.mode & 0o777) | 0o600 : 0o644;
    fs.writeFileSync(target, data, { mode });
  }
}

module.exports = { isZip, readEntries, extractZip };
