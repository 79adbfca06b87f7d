/**
 * JSON helpers that keep u64 values exact. `JSON.parse` turns integers above 2^53 into
 * approximations, so server replies that carry ids (Scan, ListDBs, HealAll, HealStats)
 * are read with these instead.
 */

/** A JSON value whose integers outside the safe range are `bigint`. */
export type BigJson = null | boolean | number | bigint | string | BigJson[] | { [key: string]: BigJson };

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

class SyntaxErrorAt extends SyntaxError {
  constructor(what: string, pos: number) {
    super(`invalid JSON: ${what} at byte ${pos}`);
    this.name = 'SyntaxError';
  }
}

/** Scans JSON bytes: value extents without building values. */
export class JsonScanner {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  ws(): void {
    while (this.pos < this.buf.length && WS.has(this.buf[this.pos]!)) this.pos++;
  }

  peek(): number {
    this.ws();
    return this.pos < this.buf.length ? this.buf[this.pos]! : -1;
  }

  expect(ch: string): void {
    if (this.peek() !== ch.charCodeAt(0)) throw new SyntaxErrorAt(`expected '${ch}'`, this.pos);
    this.pos++;
  }

  /** Skips one value; returns its [start, end) byte range. */
  skipValue(): [number, number] {
    this.ws();
    const start = this.pos;
    const b = this.buf;
    let depth = 0;
    for (;;) {
      if (this.pos >= b.length) throw new SyntaxErrorAt('unexpected end', this.pos);
      const c = b[this.pos]!;
      if (c === 0x22 /* " */) {
        this.skipString();
      } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        depth++;
        this.pos++;
      } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        if (depth === 0) throw new SyntaxErrorAt('unexpected close', this.pos);
        depth--;
        this.pos++;
      } else if (depth === 0) {
        // A scalar: runs to the next delimiter.
        while (this.pos < b.length) {
          const d = b[this.pos]!;
          if (d === 0x2c || d === 0x7d || d === 0x5d || d === 0x3a || WS.has(d)) break;
          this.pos++;
        }
        if (this.pos === start) throw new SyntaxErrorAt('expected a value', this.pos);
        return [start, this.pos];
      } else {
        this.pos++;
      }
      if (depth === 0) return [start, this.pos];
    }
  }

  /** At a `"`: skips the string, escapes included. */
  skipString(): void {
    const b = this.buf;
    this.pos++;
    while (this.pos < b.length) {
      const c = b[this.pos]!;
      if (c === 0x5c /* \ */) this.pos += 2;
      else if (c === 0x22) {
        this.pos++;
        return;
      } else this.pos++;
    }
    throw new SyntaxErrorAt('unterminated string', this.pos);
  }
}

const decoder = new TextDecoder();

/**
 * Parses JSON text like `JSON.parse`, except that integers (no fraction, no exponent)
 * outside `Number.isSafeInteger` become `bigint`, exactly.
 */
export function parseBigJson(text: string): BigJson {
  let pos = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`invalid JSON: ${what} at ${pos}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else return;
    }
  };
  const value = (): BigJson => {
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: { [key: string]: BigJson } = {};
      ws();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a key');
        const key = str();
        ws();
        if (text[pos] !== ':') fail("expected ':'");
        pos++;
        obj[key] = value();
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const arr: BigJson[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(pos, pos + 400));
    if (m) {
      pos += m[0].length;
      if (m[1] === undefined && m[2] === undefined) {
        const n = Number(m[0]);
        return Number.isSafeInteger(n) ? n : BigInt(m[0]);
      }
      return Number(m[0]);
    }
    for (const [lit, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(lit, pos)) {
        pos += lit.length;
        return v;
      }
    }
    return fail('unexpected token');
  };
  const str = (): string => {
    // Find the closing quote, then let JSON.parse handle the escapes.
    const start = pos;
    pos++;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x5c) pos += 2;
      else if (c === 0x22) {
        pos++;
        return JSON.parse(text.slice(start, pos)) as string;
      } else pos++;
    }
  };
  const v = value();
  ws();
  if (pos !== text.length) fail('trailing characters');
  return v;
}

/** A u64 from a parsed JSON value (number or bigint), exactly. */
export function toU64(v: BigJson | undefined, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new TypeError(`${what}: expected an unsigned integer, got ${JSON.stringify(String(v))}`);
}

/** One row of a Scan reply, with the document's JSON bytes as sent. */
export interface RawScanRow {
  id: bigint;
  doc: Uint8Array;
}

/**
 * Splits a Scan reply `[{"id":n,"doc":<value>},...]` into rows without parsing the
 * documents: ids exact as `bigint`, documents as their byte ranges.
 */
export function splitScanReply(data: Uint8Array): RawScanRow[] {
  const s = new JsonScanner(data);
  const rows = scanRows(s, data);
  if (s.peek() !== -1) throw new SyntaxErrorAt('trailing bytes', s.pos);
  return rows;
}

/**
 * Splits a Scan reply in its `"next"` form, `{"rows":[...],"next":id-or-null}`, as
 * {@link splitScanReply} does its rows; `next` is the id to start after for the
 * following page, `null` at the end of the collection.
 */
export function splitScanPage(data: Uint8Array): { rows: RawScanRow[]; next: bigint | null } {
  const s = new JsonScanner(data);
  let rows: RawScanRow[] | undefined;
  let next: bigint | null | undefined;
  s.expect('{');
  if (s.peek() !== 0x7d) {
    for (;;) {
      if (s.peek() !== 0x22) throw new SyntaxErrorAt('expected a key', s.pos);
      const ks = s.pos;
      s.skipString();
      const key = JSON.parse(decoder.decode(data.subarray(ks, s.pos))) as string;
      s.expect(':');
      if (key === 'rows') {
        rows = scanRows(s, data);
      } else {
        const [a, b] = s.skipValue();
        if (key === 'next') {
          const t = decoder.decode(data.subarray(a, b));
          if (t === 'null') next = null;
          else if (/^\d+$/.test(t)) next = BigInt(t);
          else throw new SyntaxErrorAt('next is neither an unsigned integer nor null', a);
        }
      }
      if (s.peek() === 0x2c) {
        s.pos++;
        continue;
      }
      break;
    }
  }
  s.expect('}');
  if (s.peek() !== -1) throw new SyntaxErrorAt('trailing bytes', s.pos);
  if (rows === undefined || next === undefined) throw new SyntaxErrorAt('scan page without rows or next', s.pos);
  return { rows, next };
}

/** The rows array of a Scan reply, from the scanner's position. */
function scanRows(s: JsonScanner, data: Uint8Array): RawScanRow[] {
  const rows: RawScanRow[] = [];
  s.expect('[');
  if (s.peek() === 0x5d) {
    s.pos++;
  } else {
    for (;;) {
      s.expect('{');
      let id: bigint | undefined;
      let doc: Uint8Array | undefined;
      if (s.peek() !== 0x7d) {
        for (;;) {
          if (s.peek() !== 0x22) throw new SyntaxErrorAt('expected a key', s.pos);
          const ks = s.pos;
          s.skipString();
          const key = JSON.parse(decoder.decode(data.subarray(ks, s.pos))) as string;
          s.expect(':');
          const [a, b] = s.skipValue();
          if (key === 'id') {
            const t = decoder.decode(data.subarray(a, b));
            if (!/^\d+$/.test(t)) throw new SyntaxErrorAt('id is not an unsigned integer', a);
            id = BigInt(t);
          } else if (key === 'doc') {
            doc = data.subarray(a, b);
          }
          if (s.peek() === 0x2c) {
            s.pos++;
            continue;
          }
          break;
        }
      }
      s.expect('}');
      if (id === undefined || doc === undefined) throw new SyntaxErrorAt('scan row without id or doc', s.pos);
      rows.push({ id, doc });
      if (s.peek() === 0x2c) {
        s.pos++;
        continue;
      }
      break;
    }
    s.expect(']');
  }
  return rows;
}
