//! wdk-async-echo: the sample driver.
//!
//! A WDM, non-PnP driver in the spirit of Microsoft's WSK echosrv, written
//! with async/await: TCP echo, datagram loops and a control device. Its code
//! arrives with the sample-driver issue; this crate holds the place the
//! workspace layout fixes (the root package's library lives in `driver/src`).
#![no_std]
