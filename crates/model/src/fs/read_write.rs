//! fs/read_write.c: the checks pread(2) makes before the file's read_iter (buffered or
//! O_DIRECT) sees the request.

use crate::folio::PAGE_SIZE;
use crate::mm::mmap::TASK_SIZE;
use crate::thread::errno;

/// include/linux/fs.h: MAX_RW_COUNT, the most one read transfers.
pub const MAX_RW_COUNT: u64 = i32::MAX as u64 & !(PAGE_SIZE - 1);

/// fs/read_write.c: ksys_pread64() ("if (pos < 0) return -EINVAL;"), then vfs_read():
/// access_ok(buf, count) (-EFAULT: the buffer must end at or below TASK_SIZE_MAX, without
/// wrapping), rw_verify_area() (-EINVAL for a negative count or a position plus count past
/// LLONG_MAX), and the count clamped to MAX_RW_COUNT. The count to read, or the errno.
pub fn ksys_pread64(buffer: u64, count: u64, position: u64) -> Result<u64, i64> {
    let position = position as i64;
    if position < 0 {
        return Err(-errno::EINVAL);
    }
    if count > TASK_SIZE || buffer > TASK_SIZE - count {
        return Err(-errno::EFAULT);
    }
    if (count as i64) < 0 || position.checked_add(count as i64).is_none() {
        return Err(-errno::EINVAL);
    }
    Ok(count.min(MAX_RW_COUNT))
}
