# The hostd AMI: a base image (Debian 12 by default) with PostgreSQL, Redis,
# hostd and its units, provisioned by provision.sh, the same script that
# builds the local sandbox's root filesystem.
#
#   packer/stage.sh packer/build/staging target/aarch64-unknown-linux-gnu/release/hostd
#   packer build -only=amazon-ebs.image -var region=eu-west-1 packer/hostd.pkr.hcl
#
# The `null` source runs the same provisioners over SSH against an existing
# host; the integration suite points it at a sandbox booted from a bare root
# filesystem. Nothing secret is baked in: hostd fetches secrets from SSM at
# run time, with the instance profile's credentials.
#
# Written for Packer 1.6.6 (Debian 12's packer; amazon-ebs built in). Newer
# Packer needs the amazon plugin: `packer plugins install
# github.com/hashicorp/amazon`.

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region to build in; the AMI is registered there."
}

variable "arch" {
  type        = string
  default     = "arm64"
  description = "arm64 (Graviton: m7g, t4g...) or x86_64. The hostd build in staging_dir must match."
  validation {
    condition     = contains(["arm64", "x86_64"], var.arch)
    error_message = "The arch variable must be arm64 or x86_64."
  }
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Instance type for the build; empty picks m7g.medium (arm64) or m7i.large (x86_64)."
}

variable "base_image" {
  type        = string
  default     = "debian-12"
  description = "debian-12, al2023 or ubuntu-24.04: the newest official image of that family is the base."
  validation {
    condition     = contains(["debian-12", "al2023", "ubuntu-24.04"], var.base_image)
    error_message = "The base_image variable must be debian-12, al2023 or ubuntu-24.04."
  }
}

variable "staging_dir" {
  type        = string
  default     = "packer/build/staging"
  description = "What packer/stage.sh assembled: the hostd build, units, default hostd.toml, provision.sh."
}

variable "ami_name_prefix" {
  type    = string
  default = "hostd"
}

variable "root_volume_size" {
  type        = number
  default     = 16
  description = "GiB. PostgreSQL's data belongs on a separate EBS volume mounted at /data."
}

variable "encrypt_boot" {
  type        = bool
  default     = true
  description = "Encrypt the AMI's snapshot with the account's default EBS key."
}

variable "runtime_packages" {
  type        = list(string)
  default     = []
  description = "Distribution packages the apps need at run time, e.g. [\"nodejs\"] or [\"python3\", \"gunicorn\"] on Debian."
  validation {
    # No alltrue(): Debian's packer predates it.
    condition     = length([for p in var.runtime_packages : p if ! can(regex("^[a-z0-9][a-z0-9.+-]*$", p))]) == 0
    error_message = "Each runtime package must be a plain package name."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Extra tags for the AMI, its snapshot and the build instance."
}

# For the `null` source (an existing host, e.g. a sandbox).
variable "ssh_host" {
  type    = string
  default = "127.0.0.1"
}

variable "ssh_port" {
  type    = number
  default = 22
}

variable "ssh_username" {
  type        = string
  default     = ""
  description = "Empty: the base image's default user (admin, ec2-user or ubuntu)."
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "For the null source; empty uses the SSH agent."
}

locals {
  # Official images: owner account, name pattern by architecture, and the
  # default user cloud-init creates (passwordless sudo, key from EC2), and
  # the root device name the image registers.
  bases = {
    "debian-12" = {
      owner       = "136693071363"
      name        = { arm64 = "debian-12-arm64-*", x86_64 = "debian-12-amd64-*" }
      user        = "admin"
      root_device = "/dev/xvda"
    }
    "al2023" = {
      owner       = "137112412989"
      name        = { arm64 = "al2023-ami-2023.*-kernel-*-arm64", x86_64 = "al2023-ami-2023.*-kernel-*-x86_64" }
      user        = "ec2-user"
      root_device = "/dev/xvda"
    }
    "ubuntu-24.04" = {
      owner = "099720109477"
      name = {
        arm64  = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"
        x86_64 = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      }
      user        = "ubuntu"
      root_device = "/dev/sda1"
    }
  }
  base          = local.bases[var.base_image]
  user          = var.ssh_username != "" ? var.ssh_username : local.base.user
  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "m7g.medium" : "m7i.large")
  timestamp     = formatdate("YYYYMMDD-hhmmss", timestamp())
  tags = merge(var.tags, {
    "hostd:base-image" = var.base_image
    "hostd:arch"       = var.arch
  })
}

source "amazon-ebs" "image" {
  region        = var.region
  instance_type = local.instance_type
  ami_name      = "${var.ami_name_prefix}-${var.base_image}-${var.arch}-${local.timestamp}"
  ssh_username  = local.user
  ena_support   = true
  encrypt_boot  = var.encrypt_boot

  source_ami_filter {
    owners      = [local.base.owner]
    most_recent = true
    filters = {
      name                = local.base.name[var.arch]
      architecture        = var.arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }

  launch_block_device_mappings {
    device_name           = local.base.root_device
    volume_size           = var.root_volume_size
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags            = local.tags
  snapshot_tags   = local.tags
  run_tags        = local.tags
  run_volume_tags = local.tags
}

source "null" "sandbox" {
  communicator         = "ssh"
  ssh_host             = var.ssh_host
  ssh_port             = var.ssh_port
  ssh_username         = local.user
  ssh_private_key_file = var.ssh_private_key_file
  ssh_agent_auth       = var.ssh_private_key_file == ""
}

build {
  sources = ["source.amazon-ebs.image", "source.null.sandbox"]

  provisioner "shell" {
    inline = ["rm -rf /tmp/hostd-staging", "mkdir -m 0700 /tmp/hostd-staging"]
  }

  # The trailing slash uploads the directory's contents.
  provisioner "file" {
    source      = "${var.staging_dir}/"
    destination = "/tmp/hostd-staging"
  }

  provisioner "shell" {
    inline = [
      "sudo env HOSTD_OPERATOR_USER=${local.user} HOSTD_RUNTIME_PACKAGES='${join(" ", var.runtime_packages)}' bash /tmp/hostd-staging/provision.sh /tmp/hostd-staging",
      "rm -rf /tmp/hostd-staging",
    ]
  }
}
