//! INF: the driver's INF template through the project's InfVerif rules
//! (`cargo xtask infverify`), as the HLK's "DF - InfVerif INF
//! Verification" runs the OS INF parser.

use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let Some((check, path)) = ctx.options.inf.clone() else {
        return Err(Stop::Skip(
            "no INF checker given (cargo xtask smoke gives it)".into(),
        ));
    };
    let (errors, warnings, findings) =
        check(&path).map_err(|e| Stop::Fail(format!("{}: {e}", path.display())))?;
    ctx.figure("errors", errors);
    ctx.figure("warnings", warnings);
    if errors > 0 {
        return Err(Stop::Fail(format!(
            "{}: {errors} error(s):\n{}",
            path.display(),
            findings.join("\n")
        )));
    }
    Ok(())
}
