//! A consistent-hash ring with virtual nodes: each endpoint owns `virtual_nodes * weight`
//! points, so when one of N endpoints leaves only its own ~1/N of the keys move.

/// Hashes bytes with FNV-1a and a splitmix64 finaliser: stable across processes and releases
/// (every gateway replica maps a key to the same instance), and well spread for short keys.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Points on the ring, sorted by hash, each naming an endpoint index.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// A ring over endpoints given as (id, weight).
    pub(crate) fn new<'a>(
        endpoints: impl Iterator<Item = (&'a str, u32)>,
        virtual_nodes: u32,
    ) -> Self {
        let mut points = Vec::new();
        let mut buf = Vec::new();
        for (index, (id, weight)) in endpoints.enumerate() {
            for v in 0..virtual_nodes.saturating_mul(weight) {
                buf.clear();
                buf.extend_from_slice(id.as_bytes());
                buf.push(b'#');
                buf.extend_from_slice(&v.to_le_bytes());
                points.push((hash(&buf), index as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// Endpoint indices in ring order starting at `key`'s point, for skipping unusable ones.
    pub(crate) fn walk(&self, key: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let h = hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        let (after, before) = self.points.split_at(start.min(self.points.len()));
        before.iter().chain(after).map(|(_, i)| *i as usize)
    }
}
