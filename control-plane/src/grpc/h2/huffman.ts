// HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decode side only: peers
// Huffman-encode header strings when that is shorter; this server writes its
// few header strings raw, which every decoder must accept.
//
// The code is canonical: codes are handed out in order of (length, symbol), each
// one more than the last, shifted left when the length grows. So the lengths
// below (Appendix B's bit counts for bytes 0x00-0xff) are the whole table; EOS
// (symbol 256) is the one 30-bit code after them, all ones.
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00-0x0f
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10-0x1f
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20-0x2f
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30-0x3f
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40-0x4f
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50-0x5f
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60-0x6f
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70-0x7f
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80-0x8f
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90-0x9f
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0-0xaf
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0-0xbf
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0-0xcf
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0-0xdf
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0-0xef
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0-0xff
];
const EOS = 256;
const EOS_LENGTH = 30;

/** Every symbol's code and bit length, EOS included, built from CODE_LENGTHS. */
export function huffmanCodes(): { code: number; bits: number }[] {
  const lengths = [...CODE_LENGTHS, EOS_LENGTH];
  const order = lengths.map((_, symbol) => symbol).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const codes: { code: number; bits: number }[] = [];
  let code = 0;
  let bits = lengths[order[0]!]!;
  for (const symbol of order) {
    code *= 2 ** (lengths[symbol]! - bits); // multiply, not <<: 30-bit codes overflow int32 shifts
    bits = lengths[symbol]!;
    codes[symbol] = { code, bits };
    code += 1;
  }
  return codes;
}

// The decoding tree as two child arrays; a child >= 0 is an inner node, a child
// < 0 is the leaf for symbol -(child + 1).
const NODES = 256;
const zeroChild = new Int32Array(NODES);
const oneChild = new Int32Array(NODES);
(function buildTree() {
  let next = 1;
  for (const [symbol, { code, bits }] of huffmanCodes().entries()) {
    let node = 0;
    for (let bit = bits - 1; bit >= 0; bit--) {
      const children = Math.floor(code / 2 ** bit) % 2 === 0 ? zeroChild : oneChild;
      if (bit === 0) children[node] = -(symbol + 1);
      else node = children[node] || (children[node] = next++);
    }
  }
})();

export class HuffmanError extends Error {}

/**
 * Decodes `bytes[start, end)` to a latin1 string (one char per octet). The final
 * partial code must be at most 7 bits of ones (the EOS prefix); EOS itself in the
 * data is an error (RFC 7541 §5.2).
 */
export function decodeHuffman(bytes: Uint8Array, start: number, end: number): string {
  // The shortest code is 5 bits, so n input bytes hold at most 8n/5 symbols.
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let length = 0;
  let node = 0;
  let pendingBits = 0;
  let pendingAllOnes = true;
  for (let i = start; i < end; i++) {
    const byte = bytes[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >> bit) & 1;
      const child = one ? oneChild[node]! : zeroChild[node]!;
      if (child >= 0) {
        node = child;
        pendingBits++;
        pendingAllOnes &&= one === 1;
        continue;
      }
      const symbol = -child - 1;
      if (symbol === EOS) throw new HuffmanError('EOS in a Huffman-coded string');
      out[length++] = symbol;
      node = 0;
      pendingBits = 0;
      pendingAllOnes = true;
    }
  }
  if (pendingBits > 7 || !pendingAllOnes) throw new HuffmanError('bad padding in a Huffman-coded string');
  return out.toString('latin1', 0, length);
}
