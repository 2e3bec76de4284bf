# frozen_string_literal: true

require "io/wait"
require "socket"

module BerryMQ
  # JSON-RPC over one TCP connection, one JSON text per line in both directions.
  #
  # A reader thread matches responses to requests by id; requests the node sends on the
  # same connection (after interconnect) are answered, in order, by a worker thread, so a
  # receiver may itself call the node without blocking the reader.
  #
  # Every call ends within its timeout, the writing of its request included: a node that
  # stops reading (stopped, or overwhelmed) fails the call with TransportError. A line
  # written only in part leaves nothing else to write on the connection, which is then
  # closed.
  class TcpChannel
    # What is read of one line from the node: an answer is at most 4 x max_size (the
    # node's bound, docs/protocol.md Limits), and the "\r\n" after it.
    # max_size counts as 1 MiB (a node's default) when it is smaller: a node bounds its
    # answers by its own max_size, not the client's (an ask's replies).
    ANSWER_FACTOR = 4
    # A node runs at most this many requests that wait (a blocking get, an ask) for one TCP
    # connection at once (its max_waiting setting) and refuses more with Limit reached
    # (-32009); this channel keeps the rest waiting here, in order, instead.
    MAX_WAITING = 16
    # How a request of the node starts (a response starts with "result" or "error").
    REQUEST_START = /\A\s*\[?\s*\{\s*("jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"method"/.freeze

    attr_reader :url

    # +handler+ answers one request Hash from the node with a response Hash (or nil).
    def initialize(url, host, port, handler:, timeout:, on_close: nil, max_waiting: MAX_WAITING,
                   max_size: JSONRPC::MAX_SIZE)
      @url = url
      @max_size = max_size
      @max_line = ANSWER_FACTOR * [max_size, JSONRPC::MAX_SIZE].max + 2
      @handler = handler
      @timeout = timeout
      @on_close = on_close
      begin
        @socket = Socket.tcp(host, port, connect_timeout: timeout)
      rescue SystemCallError, SocketError, IOError => e
        raise ConnectionClosed, "cannot reach #{url}: #{e.message}"
      end
      @socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      @socket.set_encoding(Encoding::UTF_8)
      @write_lock = Mutex.new # guards @writing: whose turn it is to write a line
      @write_free = ConditionVariable.new
      @writing = false
      @lock = Mutex.new
      @pending = {} # id -> the Waiter of the call
      @sizes = {} # id -> the bytes of the call's request
      @too_large = nil # the data of the node's Message too large, after which it closes
      @next_id = 0
      @closed = false
      @closing = false
      @failure = nil
      @inbox = Thread::Queue.new
      @slot_lock = Mutex.new
      @slot_free = ConditionVariable.new
      @slot_line = [] # the calls that wait for a slot, first come first
      @slots_used = 0
      @max_waiting = max_waiting
      @worker = Thread.new { work }
      @reader = Thread.new { read }
    end

    def closed?
      @closed
    end

    # Runs the block (one call that waits at the node: a blocking get, an ask) once fewer
    # than max_waiting such calls are outstanding on this connection, in the order the
    # calls came, and returns its value; returns :expired without running it when
    # +deadline+ (monotonic seconds; nil: none) came first. A node whose own cap is lower
    # (Limit reached, setting max_waiting) lowers this one, and the call waits again.
    def waiting(deadline)
      loop do
        return :expired unless take_slot(deadline)

        begin
          return yield
        rescue RemoteError => e
          raise unless e.code == JSONRPC::CODES[:limit_reached] && e.data.is_a?(Hash) &&
                       e.data["setting"] == "max_waiting"

          lowered = lower_cap(e.data["limit"])
        ensure
          release_slot
        end
        # the node still counts a call we no longer do (an ask answered at its timeout
        # whose receiver runs on): give it a moment
        pause = deadline ? [deadline - BerryMQ.monotonic, 0.05].min : 0.05
        sleep(pause) if !lowered && pause.positive?
      end
    end

    # How many calls that wait are outstanding, and how many wait here for their turn.
    def waiting_calls
      @slot_lock.synchronize { [@slots_used, @slot_line.size] }
    end

    # Over TCP the node calls back on this connection: interconnect's addr is null.
    def callback_url
      nil
    end

    # Calls +method+ and returns its result; raises RemoteError for the node's error,
    # TransportError when no answer came within +timeout+ seconds, ConnectionClosed when
    # the connection is gone.
    def call(method, params, timeout = @timeout)
      deadline = BerryMQ.monotonic + timeout
      waiter = Waiter.new
      id = @lock.synchronize { @next_id += 1 }
      text = JSONRPC.request_text({ "jsonrpc" => "2.0", "method" => method, "params" => params, "id" => id }, @max_size)
      @lock.synchronize do
        raise ConnectionClosed, "the connection to #{@url} is closed#{@failure && " (#{@failure})"}" if @closed

        @pending[id] = waiter
        @sizes[id] = text.bytesize
      end
      begin
        write_text(text, deadline, "#{method} request")
      rescue StandardError
        @lock.synchronize { @pending.delete(id) && @sizes.delete(id) }
        raise
      end
      reply = waiter.wait([deadline - BerryMQ.monotonic, 0].max, :timeout)
      if reply == :timeout
        @lock.synchronize { @pending.delete(id) && @sizes.delete(id) }
        raise TransportError, "#{@url} did not answer #{method} within #{JSONRPC.seconds(timeout)} s"
      end
      raise reply if reply.is_a?(Exception)

      JSONRPC.result_of(reply, @url)
    end

    def close
      @closing = true
      fail_all(ConnectionClosed.new("the connection to #{@url} was closed"))
      @socket.close unless @socket.closed?
      @inbox.close
      [@reader, @worker].each { |t| t.join(2) unless t == Thread.current }
    rescue IOError
      nil
    end

    private

    def take_slot(deadline)
      ticket = Object.new
      @slot_lock.synchronize do
        @slot_line << ticket
        free = BerryMQ.wait_for(@slot_free, @slot_lock, deadline) do
          @closed || (@slots_used < @max_waiting && @slot_line.first.equal?(ticket))
        end
        @slot_line.delete(ticket)
        @slot_free.broadcast # the next in line may go now
        @slots_used += 1 if free
        free
      end
    end

    def release_slot
      @slot_lock.synchronize do
        @slots_used -= 1
        @slot_free.broadcast
      end
    end

    # Lowers the cap to a node's max_waiting; whether it was lowered.
    def lower_cap(limit)
      return false unless limit.is_a?(Integer) && limit.positive?

      @slot_lock.synchronize do
        next false if limit >= @max_waiting

        @max_waiting = limit
        true
      end
    end

    def write(value)
      write_text(JSONRPC.dump(value, "an answer to #{@url}"), BerryMQ.monotonic + @timeout, "answer")
    end

    # Writes one line by +deadline+ (monotonic seconds), waiting for the turn of the calls
    # before it within the same deadline. Raises TransportError when the node did not take
    # it in time (the connection is closed when part of the line went), ConnectionClosed
    # when the connection is gone.
    def write_text(text, deadline, what)
      take_write_turn(deadline, what)
      begin
        write_line("#{text}\n".b, deadline, what)
      ensure
        @write_lock.synchronize do
          @writing = false
          @write_free.signal
        end
      end
    rescue IOError, SystemCallError => e
      broken("the connection to #{@url} failed: #{e.message}")
    end

    def take_write_turn(deadline, what)
      free = @write_lock.synchronize do
        BerryMQ.wait_for(@write_free, @write_lock, deadline) { !@writing || @closed }.tap do |got|
          @writing = true if got && !@closed
        end
      end
      raise ConnectionClosed, "the connection to #{@url} is closed#{@failure && " (#{@failure})"}" if @closed
      return if free

      raise TransportError, "could not send the #{what} to #{@url} within the call's timeout: the node took " \
                            "none of the lines before it (it stopped reading?)"
    end

    def write_line(data, deadline, what)
      size = data.bytesize
      until data.empty?
        written = @socket.write_nonblock(data, exception: false)
        if written == :wait_writable
          left = deadline - BerryMQ.monotonic
          next if left.positive? && @socket.wait_writable(left)

          message = "#{@url} took #{size - data.bytesize} of the #{size} bytes of the #{what} within the " \
                    "call's timeout (it stopped reading?)"
          raise TransportError, "#{message}; it was not sent" if data.bytesize == size

          broken("#{message}; the connection was closed, since a line written in part leaves it unusable")
        end
        data = data.byteslice(written, data.bytesize - written)
      end
    end

    # Closes the connection, failing every call waiting on it, and raises TransportError
    # (ConnectionClosed) saying +why+.
    def broken(why)
      error = ConnectionClosed.new(why)
      fail_all(error)
      begin
        @socket.close unless @socket.closed?
      rescue IOError
        nil
      end
      raise error
    end

    # Reads the node's lines until the connection ends. Whatever goes wrong, the reader
    # does not end without closing the channel and failing the calls waiting on it.
    def read
      while (line = @socket.gets("\n", @max_line))
        unless line.end_with?("\n")
          break too_long if line.bytesize >= @max_line

          break # the end of the connection, in the middle of a line
        end
        next if line.b.strip.empty?

        take(line)
      end
      fail_all(ConnectionClosed.new(@failure || "#{@url} closed the connection"))
    rescue IOError, SystemCallError => e
      fail_all(ConnectionClosed.new("the connection to #{@url} failed: #{e.message}"))
    rescue StandardError => e
      fail_all(ConnectionClosed.new("reading from #{@url} failed (#{e.class}: #{e.message}); the connection " \
                                    "was closed"))
      @socket.close unless @socket.closed?
    end

    # A line over what this client reads of one reply: the connection is closed, and the
    # calls waiting on it fail naming the limit.
    def too_long
      fail_all(ConnectionClosed.new("#{@url} sent a line of more than #{@max_line - 2} bytes, the limit of what " \
                                    "this client reads of one reply (4 x max(max_size, 1 MiB) = 4 x #{(@max_line - 2) / 4}); the connection " \
                                    "was closed"))
      @socket.close unless @socket.closed?
    end

    def take(line)
      unless line.valid_encoding?
        return unreadable(line, nil, "is not UTF-8 text")
      end

      value = JSONRPC.parse(line)
    rescue JSON::ParserError => e
      unreadable(line, e)
    else
      if JSONRPC.response?(value)
        respond(value)
      elsif value.is_a?(Array) && !value.empty? && value.all? { |v| JSONRPC.response?(v) }
        value.each { |v| respond(v) }
      else
        @inbox << value
      end
    end

    # A line that is not JSON or nests deeper than the protocol allows (no node writes
    # one): the call it answers fails at once, saying so, rather than waiting for its
    # timeout. When the line names no call we wait for (its id is read from its end), every
    # pending call fails so: any of them may have been answered in it. A request from the
    # node is answered Parse error, as a node answers one.
    def unreadable(line, error, why = nil)
      why ||= error.is_a?(JSON::NestingError) ? "nests arrays and objects more than #{JSONRPC::MAX_NESTING} " \
                                                  "levels deep, the limit of the protocol" : "is not JSON"
      line = line.b # it may not be UTF-8: read as bytes
      text = "#{@url} sent a line that #{why} (#{line.bytesize} bytes: #{line[0, 80].inspect})"
      unless line.match?(REQUEST_START)
        id = line[/"id"\s*:\s*(-?\d+)\s*\}\s*\z/, 1]
        waiter = id && @lock.synchronize { @sizes.delete(Integer(id)) && @pending.delete(Integer(id)) }
        return waiter.set(TransportError.new("#{text}; it answered this call")) if waiter

        waiters = @lock.synchronize { @pending.values.tap { @pending.clear && @sizes.clear } }
        waiters.each { |w| w.set(TransportError.new("#{text}; it may have been the answer to this call")) }
        return
      end
      data = error.is_a?(JSON::NestingError) ? { "limit" => JSONRPC::MAX_NESTING } : nil
      write(JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil, data))
    end

    def respond(reply)
      waiter = @lock.synchronize { @sizes.delete(reply["id"]) && @pending.delete(reply["id"]) }
      if waiter
        waiter.set(reply)
      elsif reply["id"].nil? && reply["error"].is_a?(Hash)
        # e.g. Message too large: the node closes the connection after it
        error = reply["error"]
        @failure = "#{error['message']} (#{error['code']})"
        @too_large = error["data"].is_a?(Hash) ? error["data"] : {} if error["code"] == JSONRPC::CODES[:too_large]
      end
    end

    def work
      while (request = @inbox.pop)
        answer = JSONRPC.answer(request, @handler)
        begin
          write(answer) if answer
        rescue ConnectionClosed
          return
        rescue TransportError
          next # not taken in time: the node, which waits for it, gives the link up
        end
      end
    end

    # Whether a request of +size+ bytes is the one the node closed the connection for: over
    # the limit its Message too large named (every request, when it named none).
    def too_large?(size)
      return false unless @too_large

      limit = @too_large["limit"]
      !limit.is_a?(Integer) || size > limit
    end

    def too_large_error
      MessageTooLarge.new("#{@url} refused the request: it is over the node's size limit" \
                          "#{JSONRPC.limit_of(@too_large)}; it was not run, and the node closed the " \
                          "connection (pass max_size: #{@too_large['limit'] || 'N'} to refuse such a message before sending)")
    end

    def fail_all(error)
      was_open = nil
      waiters = @lock.synchronize do
        was_open = !@closed
        @closed = true
        pending = @pending.map { |id, waiter| [waiter, @sizes[id]] }
        @pending.clear
        @sizes.clear
        pending
      end
      waiters.each { |w, size| w.set(too_large?(size) ? too_large_error : error) }
      @slot_lock.synchronize { @slot_free.broadcast }
      @write_lock.synchronize { @write_free.broadcast }
      @on_close&.call(error) if was_open && !@closing
    end
  end
end
