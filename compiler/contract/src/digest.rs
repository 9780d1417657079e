//! The digest every published file, artifact and template is recorded and checked by.

use sha2::{Digest, Sha256};

/// Lowercase hex sha256 of `bytes`, as the manifest records them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The same digest of bytes handed over in pieces: what was never laid out in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Sha256Hex(Sha256);

impl Sha256Hex {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Lowercase hex, as [`sha256_hex`].
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(digest: &[u8]) -> String {
    let mut s = String::with_capacity(64);
    for &b in digest {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_nothing_and_of_abc() {
        assert_eq!(super::sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(super::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn in_pieces_it_is_the_digest_of_the_whole() {
        let mut h = super::Sha256Hex::default();
        for piece in [&b"a"[..], b"", b"bc"] {
            h.update(piece);
        }
        assert_eq!(h.finish(), super::sha256_hex(b"abc"));
        let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut h = super::Sha256Hex::default();
        long.chunks(37).for_each(|c| h.update(c));
        assert_eq!(h.finish(), super::sha256_hex(&long));
    }
}
