//! Content codings a page can be sent in (CONTRACT.md §9), each compressed once per page
//! and kept beside it.

use std::io::Write as _;

use bytes::Bytes;

/// A compressed representation. Identity is the absence of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in the server's order of preference at equal client quality.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The `Content-Encoding` token, also the `encoding` label value.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// `body` in this coding. Levels are the libraries' usual middle ones: a page is
    /// compressed once and served many times.
    pub fn compress(self, body: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(body.len() / 4 + 64);
        match self {
            Coding::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
                gz.write_all(body).expect("compressing into memory");
                gz.finish().expect("compressing into memory");
            }
            Coding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: 5,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &body[..], &mut out, &params)
                    .expect("compressing into memory");
            }
            Coding::Zstd => {
                out = zstd::bulk::compress(body, 3).expect("compressing into memory");
            }
        }
        // An exact-size copy: the buffer grew by doubling (or, for zstd, was sized for
        // the worst case) and may hold nearly twice the compressed length; `Bytes::from`
        // would keep all of it, and the cache weighs a view by its length.
        Bytes::copy_from_slice(&out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn every_coding_round_trips_and_shrinks_json() {
        let body = br#"{"entries":[{"level":"info","message":"request completed"}]}"#.repeat(50);
        for coding in Coding::ALL {
            let packed = coding.compress(&body);
            assert!(packed.len() < body.len() / 4, "{coding:?}");
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Br => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Zstd => back = zstd::stream::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(back, body, "{coding:?}");
        }
    }
}
