// Seeded PRNG for the bench's image generator: sfc32, seeded from a string by cyrb128.
// Deterministic across runs and Node versions; never Math.random.

/** cyrb128: four 32-bit words from a string. */
function cyrb128(str) {
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

export class Rng {
  constructor(seed) {
    [this.a, this.b, this.c, this.d] = cyrb128(String(seed));
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** Uniform 32-bit unsigned integer. */
  u32() {
    let { a, b, c, d } = this;
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    this.a = a; this.b = b; this.c = c; this.d = d;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float() {
    return this.u32() / 4294967296;
  }

  /** Integer in [lo, hi] inclusive. */
  int(lo, hi) {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** Log-uniform integer in [lo, hi]. */
  logInt(lo, hi) {
    return Math.floor(Math.exp(Math.log(lo) + this.float() * (Math.log(hi) - Math.log(lo))));
  }

  pick(array) {
    return array[Math.floor(this.float() * array.length)];
  }

  /** Zipf-ish pick: low indices much more frequent (like word frequencies). */
  zipf(array) {
    const r = this.float();
    return array[Math.floor(r * r * r * array.length)];
  }

  chance(p) {
    return this.float() < p;
  }

  /** A derived generator, so sub-streams do not depend on how much the parent consumed. */
  fork(label) {
    return new Rng(`${this.u32()}:${label}`);
  }

  /** `n` random bytes (incompressible). */
  bytes(n) {
    const words = Math.ceil(n / 4);
    const u32 = new Uint32Array(words);
    let { a, b, c, d } = this;
    for (let i = 0; i < words; i++) {
      a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
      let t = (a + b) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = (c << 21) | (c >>> 11);
      d = (d + 1) | 0;
      t = (t + d) | 0;
      c = (c + t) | 0;
      u32[i] = t;
    }
    this.a = a; this.b = b; this.c = c; this.d = d;
    return Buffer.from(u32.buffer, 0, n);
  }
}
