//! `--shard I/N`: a replica takes the clients whose stable hash falls in its shard. The
//! hash is FNV-1a of the name — the same on every machine and every run, unlike std's
//! randomized hasher — so replicas agree on who owns which client without talking.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let err = || format!("`{text}` is not a shard; write I/N with 0 <= I < N, like 0/3");
        let (i, n) = text.split_once('/').ok_or_else(err)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    pub fn owns(&self, client: &str) -> bool {
        (fnv1a(client) % u64::from(self.count)) as u32 == self.index
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_a_fleet_exactly_once() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for n in 0..1000 {
            let name = format!("client-{n}");
            assert_eq!(shards.iter().filter(|s| s.owns(&name)).count(), 1, "{name}");
        }
        let first = (0..1000)
            .filter(|n| shards[0].owns(&format!("client-{n}")))
            .count();
        assert!((250..420).contains(&first), "roughly even: {first}");
    }

    #[test]
    fn malformed_shards_are_refused() {
        for bad in ["", "1", "0/0", "3/3", "a/b", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
    }
}
