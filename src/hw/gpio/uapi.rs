//! The Linux GPIO character device uAPI v2 (`linux/gpio.h`, Linux 5.10+):
//! the structs and ioctl numbers ledge uses, laid out exactly as the kernel
//! declares them.
//!
//! Every struct is fixed-size: only `u32`/`u64` fields with the kernel's
//! explicit padding, `__aligned_u64` as `align(8)`, so the layout is the same
//! on aarch64, armv7 and x86_64 (the size tests below pin it to the kernel's
//! sizes; the ioctl numbers encode those sizes). The v1 ioctls are
//! deprecated and may be compiled out (`CONFIG_GPIO_CDEV_V1`); ledge does not
//! use them.

/// `GPIO_MAX_NAME_SIZE`.
pub const MAX_NAME_SIZE: usize = 32;
/// `GPIO_V2_LINES_MAX`.
pub const LINES_MAX: usize = 64;
/// `GPIO_V2_LINE_NUM_ATTRS_MAX`.
pub const NUM_ATTRS_MAX: usize = 10;

pub const FLAG_ACTIVE_LOW: u64 = 1 << 1;
pub const FLAG_INPUT: u64 = 1 << 2;
pub const FLAG_OUTPUT: u64 = 1 << 3;
pub const FLAG_EDGE_RISING: u64 = 1 << 4;
pub const FLAG_EDGE_FALLING: u64 = 1 << 5;
pub const FLAG_BIAS_PULL_UP: u64 = 1 << 8;
pub const FLAG_BIAS_PULL_DOWN: u64 = 1 << 9;
pub const FLAG_BIAS_DISABLED: u64 = 1 << 10;

pub const ATTR_ID_OUTPUT_VALUES: u32 = 2;
pub const ATTR_ID_DEBOUNCE: u32 = 3;

pub const EVENT_RISING_EDGE: u32 = 1;
pub const EVENT_FALLING_EDGE: u32 = 2;

/// `struct gpiochip_info` (68 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ChipInfo {
    pub name: [u8; MAX_NAME_SIZE],
    pub label: [u8; MAX_NAME_SIZE],
    pub lines: u32,
}

/// `struct gpio_v2_line_values` (16 bytes): bit i is the i-th requested line.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct LineValues {
    pub bits: u64,
    pub mask: u64,
}

/// `struct gpio_v2_line_attribute` (16 bytes). The kernel's union of
/// `flags`, `values` and `debounce_period_us` is one `u64` here.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct LineAttribute {
    pub id: u32,
    pub padding: u32,
    pub value: u64,
}

impl LineAttribute {
    /// The debounce attribute: a `u32` at the start of the union, which is
    /// the low half of the `u64` on little-endian machines.
    pub fn debounce(period_us: u32) -> Self {
        let value = if cfg!(target_endian = "little") {
            u64::from(period_us)
        } else {
            u64::from(period_us) << 32
        };
        Self {
            id: ATTR_ID_DEBOUNCE,
            padding: 0,
            value,
        }
    }
}

/// `struct gpio_v2_line_config_attribute` (24 bytes).
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct LineConfigAttribute {
    pub attr: LineAttribute,
    /// Which requested lines the attribute applies to.
    pub mask: u64,
}

/// `struct gpio_v2_line_config` (272 bytes).
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct LineConfig {
    pub flags: u64,
    pub num_attrs: u32,
    pub padding: [u32; 5],
    pub attrs: [LineConfigAttribute; NUM_ATTRS_MAX],
}

/// `struct gpio_v2_line_request` (592 bytes): the argument of
/// `GPIO_V2_GET_LINE_IOCTL`; the kernel fills in `fd`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct LineRequest {
    pub offsets: [u32; LINES_MAX],
    pub consumer: [u8; MAX_NAME_SIZE],
    pub config: LineConfig,
    pub num_lines: u32,
    pub event_buffer_size: u32,
    pub padding: [u32; 5],
    pub fd: i32,
}

impl Default for LineRequest {
    fn default() -> Self {
        Self {
            offsets: [0; LINES_MAX],
            consumer: [0; MAX_NAME_SIZE],
            config: LineConfig::default(),
            num_lines: 0,
            event_buffer_size: 0,
            padding: [0; 5],
            fd: -1,
        }
    }
}

/// `struct gpio_v2_line_event` (48 bytes), read() from a line request fd.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default)]
pub struct LineEvent {
    pub timestamp_ns: u64,
    pub id: u32,
    pub offset: u32,
    pub seqno: u32,
    pub line_seqno: u32,
    pub padding: [u32; 6],
}

/// `_IOC(dir, type, nr, size)` as asm-generic/ioctl.h encodes it (the
/// encoding of arm, aarch64 and x86).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    const GPIO_IOC_MAGIC: u32 = 0xB4;
    (dir << 30) | ((size as u32) << 16) | (GPIO_IOC_MAGIC << 8) | nr
}
const IOC_READ: u32 = 2;
const IOC_WRITE: u32 = 1;

pub const GPIO_GET_CHIPINFO_IOCTL: u32 = ioc(IOC_READ, 0x01, size_of::<ChipInfo>());
pub const GPIO_V2_GET_LINE_IOCTL: u32 = ioc(IOC_READ | IOC_WRITE, 0x07, size_of::<LineRequest>());
pub const GPIO_V2_LINE_GET_VALUES_IOCTL: u32 =
    ioc(IOC_READ | IOC_WRITE, 0x0E, size_of::<LineValues>());
pub const GPIO_V2_LINE_SET_VALUES_IOCTL: u32 =
    ioc(IOC_READ | IOC_WRITE, 0x0F, size_of::<LineValues>());

// The kernel's sizes, checked when compiling for any target (armv7 too,
// where a `u64` is 8-aligned as on aarch64 and x86_64): a layout mistake is
// a build error, not a corrupted ioctl.
const _: () = assert!(size_of::<ChipInfo>() == 68);
const _: () = assert!(size_of::<LineValues>() == 16);
const _: () = assert!(size_of::<LineAttribute>() == 16);
const _: () = assert!(size_of::<LineConfigAttribute>() == 24);
const _: () = assert!(size_of::<LineConfig>() == 272);
const _: () = assert!(size_of::<LineRequest>() == 592);
const _: () = assert!(size_of::<LineEvent>() == 48);
const _: () = assert!(std::mem::offset_of!(LineRequest, fd) == 588);

/// A NUL-padded C name as text.
pub fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernels_sizes() {
        assert_eq!(size_of::<ChipInfo>(), 68);
        assert_eq!(size_of::<LineValues>(), 16);
        assert_eq!(size_of::<LineAttribute>(), 16);
        assert_eq!(size_of::<LineConfigAttribute>(), 24);
        assert_eq!(size_of::<LineConfig>(), 272);
        assert_eq!(size_of::<LineRequest>(), 592);
        assert_eq!(size_of::<LineEvent>(), 48);
    }

    #[test]
    fn fields_sit_at_the_kernels_offsets() {
        assert_eq!(std::mem::offset_of!(LineRequest, consumer), 256);
        assert_eq!(std::mem::offset_of!(LineRequest, config), 288);
        assert_eq!(std::mem::offset_of!(LineRequest, num_lines), 560);
        assert_eq!(std::mem::offset_of!(LineRequest, fd), 588);
        assert_eq!(std::mem::offset_of!(LineConfig, attrs), 32);
        assert_eq!(std::mem::offset_of!(LineEvent, id), 8);
    }

    #[test]
    fn ioctl_numbers_match_linux_gpio_h() {
        // Values of the macros as a C compiler computes them on arm64.
        assert_eq!(GPIO_GET_CHIPINFO_IOCTL, 0x8044_B401);
        assert_eq!(GPIO_V2_GET_LINE_IOCTL, 0xC250_B407);
        assert_eq!(GPIO_V2_LINE_GET_VALUES_IOCTL, 0xC010_B40E);
        assert_eq!(GPIO_V2_LINE_SET_VALUES_IOCTL, 0xC010_B40F);
    }

    #[test]
    fn debounce_sits_in_the_first_four_bytes_of_the_union() {
        let attr = LineAttribute::debounce(5000);
        // SAFETY: LineAttribute is plain old data of 16 bytes.
        let bytes: [u8; 16] = unsafe { std::mem::transmute(attr) };
        assert_eq!(&bytes[0..4], &ATTR_ID_DEBOUNCE.to_ne_bytes());
        assert_eq!(&bytes[8..12], &5000u32.to_ne_bytes());
    }
}
