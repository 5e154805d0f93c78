use super::*;

#[test]
fn a_whole_namespace_and_its_shards_exclude_each_other() {
    assert!(excludes("db.c", "db.c shard 0/4"));
    assert!(excludes("db.c shard 3/4", "db.c"));
    assert!(excludes("db.c shard 0/4", "db.c shard 0/8"));
    assert!(!excludes("db.c shard 0/4", "db.c shard 1/4"));
    assert!(!excludes("db.c", "db.d"));
    assert!(!excludes("db.c shard 0/4", "db.d shard 0/8"));
}
