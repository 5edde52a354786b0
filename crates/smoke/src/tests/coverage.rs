//! IRP coverage (the DF Coverage test's idea): which major functions and
//! IOCTL codes the run reached, and with what outcome. Informational, as
//! in the HLK, except that a code the driver serves and the run never got
//! a success from, or a major function it never sent, is named.

use echo_ioctl::{
    IOCTL_ECHO_GET_STATISTICS, IOCTL_ECHO_RECEIVE_DATAGRAM, IOCTL_ECHO_RESET_STATISTICS,
};

use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let majors = ctx.coverage.majors();
    if majors.is_empty() {
        return Err(Stop::Skip(
            "no other test sent a request (run with the others)".into(),
        ));
    }
    let list: Vec<String> = majors
        .iter()
        .map(|(name, n)| format!("{}={n}", name.trim_start_matches("IRP_MJ_")))
        .collect();
    ctx.figure("majors", list.join(" "));
    let mut missing = Vec::new();
    for (code, name) in [
        (IOCTL_ECHO_GET_STATISTICS, "GET_STATISTICS"),
        (IOCTL_ECHO_RESET_STATISTICS, "RESET_STATISTICS"),
        (IOCTL_ECHO_RECEIVE_DATAGRAM, "RECEIVE_DATAGRAM"),
    ] {
        let c = ctx.coverage.code(code);
        ctx.figure(name, format!("{}/{}/{}", c.sent, c.reached, c.succeeded));
        if c.succeeded == 0 && c.sent > 0 {
            missing.push(name);
        }
    }
    let (distinct, reached) = ctx.coverage.distinct();
    ctx.figure("codes sent/reached", format!("{distinct}/{reached}"));
    for major in [
        "IRP_MJ_CREATE",
        "IRP_MJ_CLEANUP",
        "IRP_MJ_CLOSE",
        "IRP_MJ_DEVICE_CONTROL",
    ] {
        if !majors.contains_key(major) {
            missing.push(major);
        }
    }
    if !missing.is_empty() {
        ctx.figure("never reached with success", missing.join(" "));
    }
    Ok(())
}
