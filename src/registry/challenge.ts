/**
 * `WWW-Authenticate` parsing (RFC 7235 §4.1, RFC 6750 §3). A header may hold several
 * challenges, each `scheme [token68 | auth-param *("," auth-param)]`; parameter values are
 * tokens or quoted strings with backslash escapes, and a quoted `scope` may itself contain
 * commas (`repository:a:pull,push`), so splitting on "," is wrong.
 */

export interface Challenge {
  /** The auth scheme, lowercased (`bearer`, `basic`). */
  scheme: string;
  /** Parameters with lowercased names; values unquoted and unescaped. */
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when the challenge uses it instead of params. */
  token68?: string;
}

const TCHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;

/** Parses one or more `WWW-Authenticate` header values into challenges, in order. */
export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') return header.flatMap((value) => parseChallenges(value));
  return new ChallengeParser(header).parse();
}

/** The first challenge of `scheme` (case-insensitive), if any. */
export function findChallenge(challenges: readonly Challenge[], scheme: string): Challenge | undefined {
  const wanted = scheme.toLowerCase();
  return challenges.find((challenge) => challenge.scheme === wanted);
}

class ChallengeParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parse(): Challenge[] {
    const challenges: Challenge[] = [];
    for (;;) {
      this.skipSeparators();
      if (this.done()) return challenges;
      const scheme = this.token();
      if (scheme === '') {
        // Not a token where a scheme should be: skip to the next comma and resync.
        this.skipPast(',');
        continue;
      }
      challenges.push(this.challengeBody(scheme.toLowerCase()));
    }
  }

  private challengeBody(scheme: string): Challenge {
    const params: Record<string, string> = {};
    const challenge: Challenge = { scheme, params };
    this.skipSpaces();
    // token68 (`Negotiate abc==`): a run of token68 characters that ends the challenge.
    // `realm="x"` also starts with such a run (`realm=`), but a value follows it.
    const token68 = /^[A-Za-z0-9\-._~+/]+=*/.exec(this.text.slice(this.pos));
    if (token68 !== null) {
      const after = this.text.slice(this.pos + token68[0].length).trimStart();
      if (after === '' || after.startsWith(',')) {
        challenge.token68 = token68[0];
        this.pos += token68[0].length;
        return challenge;
      }
    }
    for (;;) {
      this.skipSpaces();
      const save = this.pos;
      const name = this.token();
      this.skipSpaces();
      if (name === '' || this.text[this.pos] !== '=') {
        // The next challenge's scheme (or junk): leave it for the outer loop.
        this.pos = save;
        return challenge;
      }
      this.pos++; // "="
      this.skipSpaces();
      const value = this.text[this.pos] === '"' ? this.quoted() : this.token();
      params[name.toLowerCase()] = value;
      this.skipSpaces();
      if (this.text[this.pos] !== ',') return challenge;
      // A comma ends this param; whether the next thing is a param or a new challenge
      // is decided by whether "=" follows its token.
      while (this.text[this.pos] === ',' || this.isSpace()) this.pos++;
      const lookahead = this.pos;
      const next = this.token();
      this.skipSpaces();
      const isParam = next !== '' && this.text[this.pos] === '=';
      this.pos = lookahead;
      if (!isParam) return challenge;
    }
  }

  private token(): string {
    const start = this.pos;
    while (!this.done() && TCHAR.test(this.text[this.pos] ?? '')) this.pos++;
    return this.text.slice(start, this.pos);
  }

  private quoted(): string {
    this.pos++; // opening quote
    let value = '';
    while (!this.done()) {
      const ch = this.text[this.pos++] ?? '';
      if (ch === '"') return value;
      if (ch === '\\' && !this.done()) value += this.text[this.pos++] ?? '';
      else value += ch;
    }
    return value; // unterminated: be lenient, take what is there
  }

  private skipSeparators(): void {
    while (!this.done() && (this.text[this.pos] === ',' || this.isSpace())) this.pos++;
  }

  private skipSpaces(): void {
    while (!this.done() && this.isSpace()) this.pos++;
  }

  private skipPast(ch: string): void {
    const index = this.text.indexOf(ch, this.pos);
    this.pos = index === -1 ? this.text.length : index + 1;
  }

  private isSpace(): boolean {
    const ch = this.text[this.pos];
    return ch === ' ' || ch === '\t';
  }

  private done(): boolean {
    return this.pos >= this.text.length;
  }
}
