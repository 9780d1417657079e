//! What an EC2 instance type offers (vCPUs, memory), for the default limits of the service it
//! runs: the whole instance less what the agent and the operating system keep. Derived from the
//! type's family and size by EC2's published ratios; a type outside them has no default limit.

/// What the agent, the container engine and the OS keep on every instance.
pub const RESERVED_MIB: u32 = 384;

/// (vCPUs, memory in MiB) of an EC2 instance type, when its family and size are known.
pub fn instance(instance_type: &str) -> Option<(u32, u32)> {
    let (family, size) = instance_type.split_once('.')?;
    // Burstable families: each size has its own figures.
    if family.starts_with('t') {
        let (vcpus, gib_x2) = match size {
            "nano" => (2, 1),
            "micro" => (2, 2),
            "small" => (2, 4),
            "medium" => (2, 8),
            "large" => (2, 16),
            "xlarge" => (4, 32),
            "2xlarge" => (8, 64),
            _ => return None,
        };
        return Some((vcpus, gib_x2 * 512));
    }
    // General purpose 4 GiB per vCPU, compute 2, memory 8.
    let gib_per_vcpu = match family.as_bytes().first()? {
        b'm' => 4,
        b'c' => 2,
        b'r' => 8,
        _ => return None,
    };
    let generation_ok = family[1..].bytes().next().is_some_and(|b| b.is_ascii_digit());
    if !generation_ok {
        return None;
    }
    let vcpus = match size {
        "medium" => 1,
        "large" => 2,
        "xlarge" => 4,
        s => 4 * s.strip_suffix("xlarge")?.parse::<u32>().ok().filter(|n| *n >= 2)?,
    };
    Some((vcpus, vcpus * gib_per_vcpu * 1024))
}

/// The default limits of a service alone on `instance_type`: every vCPU, and the memory less
/// `RESERVED_MIB`; `None` when the type is not known.
pub fn default_limits(instance_type: &str) -> Option<(u32, u32)> {
    instance(instance_type).map(|(vcpus, mib)| (vcpus * 1000, mib.saturating_sub(RESERVED_MIB)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_by_family_and_size() {
        assert_eq!(instance("t3.small"), Some((2, 2048)));
        assert_eq!(instance("t4g.nano"), Some((2, 512)));
        assert_eq!(instance("m6i.large"), Some((2, 8192)));
        assert_eq!(instance("c7g.4xlarge"), Some((16, 32768)));
        assert_eq!(instance("r5.xlarge"), Some((4, 32768)));
        assert_eq!(instance("x2idn.16xlarge"), None);
        assert_eq!(instance("m6i.metal"), None);
        assert_eq!(default_limits("t3.small"), Some((2000, 2048 - RESERVED_MIB)));
    }
}
