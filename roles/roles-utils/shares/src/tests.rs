use super::*;

fn target(byte: u8) -> Target {
    Target::from_le_bytes([byte; 32])
}

/// A hash whose every byte is `byte` (little-endian, like a target).
fn hash(byte: u8) -> Target {
    target(byte)
}

/// A miner's share on a job, in the order a caller checks it.
struct Share {
    job: u32,
    extranonce: usize,
    ntime: u32,
    version: u32,
    hash: Target,
}

const JOB_VERSION: u32 = 0x2000_0000;
const MIN_NTIME: u32 = 1_000;
const EXTRANONCE: usize = 4;

fn share(job: u32, hash_byte: u8) -> Share {
    Share {
        job,
        extranonce: EXTRANONCE,
        ntime: MIN_NTIME,
        version: JOB_VERSION,
        hash: hash(hash_byte),
    }
}

/// Jobs 1 (at `0x0f…`) and 2 (at `0x0f…`, re-sent at `0x01…` after a retarget) are listed;
/// the floor is `0x3f…`; ids up to 3 were issued; two shares per job at most.
fn checker() -> ShareChecker<u32, ()> {
    let mut c = ShareChecker::new(target(0x3f), 8, 2);
    c.send(1, (), target(0x0f), true);
    c.send(2, (), target(0x0f), false);
    c.send(2, (), target(0x01), false);
    c
}

fn judge(c: &mut ShareChecker<u32, ()>, s: &Share, next_id: u32) -> Result<(), Rejection> {
    let sent = c.job(&s.job).map_err(|e| match e {
        Rejection::Stale => Rejection::unknown_job(s.job, next_id),
        other => other,
    })?;
    let required = sent.required;
    check_extranonce_size(s.extranonce, EXTRANONCE)?;
    NtimeRule::FromMinNtime(MIN_NTIME).check(s.ntime)?;
    VersionRule::new(JOB_VERSION, true).check(s.version)?;
    c.record(&s.job, &s.hash, &required)
}

#[test]
fn every_verdict_has_its_code() {
    let cases: &[(&str, Share, Result<(), Rejection>, &str)] = &[
        (
            "a share meeting its job's target",
            share(1, 0x0e),
            Ok(()),
            "",
        ),
        (
            "found before a harder target was sent: judged by the easiest",
            share(2, 0x0e),
            Ok(()),
            "",
        ),
        (
            "a job issued but no longer listed",
            share(0, 0x00),
            Err(Rejection::Stale),
            "stale-share",
        ),
        (
            "a job never issued",
            share(9, 0x00),
            Err(Rejection::InvalidJobId),
            "invalid-job-id",
        ),
        (
            "the wrong extranonce size",
            Share {
                extranonce: EXTRANONCE + 1,
                ..share(1, 0x00)
            },
            Err(Rejection::ExtranonceSize),
            "invalid-extranonce-size",
        ),
        (
            "a time before the job's",
            Share {
                ntime: MIN_NTIME - 1,
                ..share(1, 0x00)
            },
            Err(Rejection::Ntime),
            "invalid-timestamp",
        ),
        (
            "a time over two hours ahead",
            Share {
                ntime: MIN_NTIME + MAX_NTIME_AHEAD + 1,
                ..share(1, 0x00)
            },
            Err(Rejection::Ntime),
            "invalid-timestamp",
        ),
        (
            "a rolled bit outside BIP320",
            Share {
                version: JOB_VERSION | 1,
                ..share(1, 0x00)
            },
            Err(Rejection::Version),
            "invalid-version",
        ),
        (
            "a hash over the easiest target",
            share(1, 0x10),
            Err(Rejection::Difficulty),
            "difficulty-too-low",
        ),
    ];
    for (name, s, expected, code) in cases {
        let mut c = checker();
        let got = judge(&mut c, s, 4);
        assert_eq!(&got, expected, "{name}");
        if let Err(e) = got {
            assert_eq!(e.code(), *code, "{name}");
            assert_eq!(e.to_string(), *code, "{name}");
        }
    }
}

#[test]
fn a_share_is_judged_by_the_easiest_target_its_job_was_sent_with_floored() {
    // (targets the job was sent with, oldest first; floor; the target a share must meet)
    let cases: &[(&[u8], u8, u8)] = &[
        (&[0x0f], 0xff, 0x0f),
        // Found before the harder target reached the miner: still counts.
        (&[0x0f, 0x01], 0xff, 0x0f),
        (&[0x01, 0x0f], 0xff, 0x0f),
        (&[0x01, 0x0f, 0x03], 0xff, 0x0f),
        // The floor holds whatever the listings say.
        (&[0xff], 0x3f, 0x3f),
        (&[0x0f, 0xff], 0x3f, 0x3f),
    ];
    for (sent, floor, required) in cases {
        let mut c = ShareChecker::<u32, u8>::new(target(*floor), 8, 16);
        for (i, t) in sent.iter().enumerate() {
            c.send(7, i as u8, target(*t), false);
        }
        let job = c.job(&7).expect("listed");
        assert_eq!(
            job.required,
            target(*required),
            "{sent:?} floored at {floor:#x}"
        );
        // The job is as last sent.
        assert_eq!(*job.job as usize, sent.len() - 1);
    }
}

#[test]
fn a_retarget_without_resending_counts_work_under_the_easiest_target_since_sending() {
    let mut c = ShareChecker::<u32, ()>::new(target(0xff), 8, 16);
    c.send(1, (), target(0x0f), true);
    // (new channel target, then a job sent at it or none, then (job, required) after)
    type Step = (u8, Option<u32>, &'static [(u32, u8)]);
    let steps: &[Step] = &[
        // Harder: job 1 was worked at the easier one; job 2 is sent at the harder.
        (0x01, Some(2), &[(1, 0x0f), (2, 0x01)]),
        // Harder still: both keep what they were worked at.
        (0x00, Some(3), &[(1, 0x0f), (2, 0x01), (3, 0x00)]),
        // Easier: applies to every job at once.
        (0x3f, None, &[(1, 0x3f), (2, 0x3f), (3, 0x3f)]),
    ];
    for (new, sent, required) in steps {
        c.retarget(target(*new));
        if let Some(id) = sent {
            c.send(*id, (), target(*new), false);
        }
        for (job, t) in *required {
            let got = c.job(job).map(|j| j.required);
            assert_eq!(got, Ok(target(*t)), "after {new:#x}: job {job}");
        }
    }
}

#[test]
fn duplicates_are_refused_and_each_job_is_bounded() {
    let mut c = checker();
    let easy = target(0x3f);
    // (job, hash byte, verdict), in order.
    let cases: &[(u32, u8, Result<(), Rejection>)] = &[
        (1, 0x01, Ok(())),
        (1, 0x01, Err(Rejection::Duplicate)),
        (1, 0x02, Ok(())),
        // Full: refused, and nothing forgotten to make room.
        (1, 0x03, Err(Rejection::JobShareLimit(2))),
        (1, 0x01, Err(Rejection::Duplicate)),
        (1, 0x02, Err(Rejection::Duplicate)),
        // Another job has its own room.
        (2, 0x01, Ok(())),
        // A duplicate is a duplicate whatever its difficulty now.
        (2, 0x01, Err(Rejection::Duplicate)),
    ];
    for (i, (job, h, expected)) in cases.iter().enumerate() {
        assert_eq!(&c.record(job, &hash(*h), &easy), expected, "case {i}");
    }
    assert_eq!(Rejection::JobShareLimit(2).code(), codes::INVALID_SHARE);
    assert_eq!(c.remembered(), 3);
}

#[test]
fn across_jobs_a_hash_remembered_on_any_listed_job_is_a_duplicate() {
    // Jobs 1 and 2 (the same work sent twice, say): (job, hash byte, verdict), in order.
    let cases: &[(u32, u8, Result<(), Rejection>)] = &[
        (1, 0x01, Ok(())),
        // The same hash under the other id is the same work.
        (2, 0x01, Err(Rejection::Duplicate)),
        (2, 0x02, Ok(())),
        (1, 0x02, Err(Rejection::Duplicate)),
        (2, 0x03, Ok(())),
        // Job 2 is full; job 1 still has room, but not for job 2's shares.
        (2, 0x04, Err(Rejection::JobShareLimit(2))),
        (1, 0x03, Err(Rejection::Duplicate)),
        (1, 0x04, Ok(())),
    ];
    let mut c = checker().duplicates_across_jobs();
    let easy = target(0x3f);
    for (i, (job, h, expected)) in cases.iter().enumerate() {
        assert_eq!(&c.record(job, &hash(*h), &easy), expected, "case {i}");
    }
    assert_eq!(c.remembered(), 4);
    // Without it, only the share's own job counts (callers that never send the same work
    // under two ids).
    let mut c = checker();
    assert_eq!(c.record(&1, &hash(1), &easy), Ok(()));
    assert_eq!(c.record(&2, &hash(1), &easy), Ok(()));
    // A job that leaves takes its shares along, in both.
    let mut c = checker().duplicates_across_jobs();
    assert_eq!(c.record(&1, &hash(1), &easy), Ok(()));
    c.send(3, (), target(0x0f), true);
    assert_eq!(c.record(&3, &hash(1), &easy), Ok(()));
}

#[test]
fn jobs_leave_with_their_shares() {
    // (what happens, job 1 still listed, shares remembered)
    let mut c = ShareChecker::<u32, ()>::new(target(0xff), 2, 8);
    c.send(1, (), target(0xff), true);
    assert_eq!(c.record(&1, &hash(1), &target(0xff)), Ok(()));
    let steps: &[(&str, u32, bool, bool, usize)] = &[
        ("a second job", 2, false, true, 1),
        ("a third: only two stay listed", 3, false, false, 0),
        ("a clean job drops the rest", 4, true, false, 0),
    ];
    for (name, id, clean, listed, remembered) in steps {
        c.send(*id, (), target(0xff), *clean);
        assert_eq!(c.job(&1).is_ok(), *listed, "{name}");
        assert_eq!(c.remembered(), *remembered, "{name}");
        assert_eq!(c.newest_id(), Some(id), "{name}");
    }
    assert_eq!(c.job(&3).err(), Some(Rejection::Stale));
    c.clear();
    assert_eq!(c.job(&4).err(), Some(Rejection::Stale));
    assert_eq!(c.newest_id(), None);
}

#[test]
fn ntime_rules() {
    let cases = [
        (NtimeRule::Unchecked, 0, Ok(())),
        (NtimeRule::Unchecked, u32::MAX, Ok(())),
        (NtimeRule::FromMinNtime(1_000), 999, Err(Rejection::Ntime)),
        (NtimeRule::FromMinNtime(1_000), 1_000, Ok(())),
        (
            NtimeRule::FromMinNtime(1_000),
            1_000 + MAX_NTIME_AHEAD,
            Ok(()),
        ),
        (
            NtimeRule::FromMinNtime(1_000),
            1_001 + MAX_NTIME_AHEAD,
            Err(Rejection::Ntime),
        ),
        (NtimeRule::FromMinNtime(u32::MAX), u32::MAX, Ok(())),
    ];
    for (rule, ntime, expected) in cases {
        assert_eq!(rule.check(ntime), expected, "{rule:?} {ntime}");
    }
}

#[test]
fn version_rolling_rules() {
    let v = JOB_VERSION;
    // (rolling agreed, full version, verdict)
    let full = [
        (true, v, Ok(v)),
        (true, v | 0x2000, Ok(v | 0x2000)),
        (true, v | 1, Err(Rejection::Version)),
        (false, v, Ok(v)),
        (false, v | 0x2000, Err(Rejection::Version)),
    ];
    for (rolling, version, expected) in full {
        let rule = VersionRule::new(v, rolling);
        assert_eq!(rule.check(version), expected, "{rolling} {version:#x}");
    }
    // (rolling agreed, SV1 version bits, the header version)
    let bits = [
        (true, None, Ok(v)),
        (true, Some(0x0000_2000), Ok(v | 0x2000)),
        // Bits outside the mask are ignored.
        (true, Some(0xffff_ffff), Ok(v | VERSION_ROLLING_MASK)),
        (false, None, Ok(v)),
        (false, Some(0x2000), Err(Rejection::Version)),
    ];
    for (rolling, b, expected) in bits {
        let rule = VersionRule::new(v, rolling);
        assert_eq!(rule.apply_bits(b), expected, "{rolling} {b:?}");
    }
}
